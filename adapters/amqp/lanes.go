package amqp

import "warehouse/domain"

// splitLanes divides the events of a batch into at most n lanes by product, each lane the
// indexes of its events in delivery order, for transactions that run at once. Events of
// different products share no stock row, so lanes are independent, and judging each in
// its own transaction gives what judging the batch in one would, provided no movement and
// no identity (source, id) has events in two lanes: then which of them came first would
// depend on which transaction commits first (a second leg naming another product is a
// conflict, a reused identity a duplicate). Such a batch, rare and only from a faulty or
// hostile publisher, is one lane. A batch has a lane for every minEach of its events at
// most, so one of fewer than 2×minEach is one lane: a transaction costs round trips,
// planning and a commit whatever its size, and where batches are small the store is
// keeping up anyway (a slow store gets full ones).
func splitLanes(events []domain.Event, n, minEach int) [][]int {
	whole := func() [][]int {
		all := make([]int, len(events))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	n = min(n, len(events)/max(minEach, 1))
	if n < 2 {
		return whole()
	}
	lanes := make([][]int, n)
	movementLane := make(map[domain.MovementID]int, len(events))
	identityLane := make(map[domain.Identity]int, len(events))
	for i, e := range events {
		l := laneOf(e.ProductID, n)
		if m, ok := movementLane[e.MovementID]; ok && m != l {
			return whole()
		}
		id := domain.Identity{Source: e.Source, ID: e.ID}
		if m, ok := identityLane[id]; ok && m != l {
			return whole()
		}
		movementLane[e.MovementID], identityLane[id] = l, l
		lanes[l] = append(lanes[l], i)
	}
	used := lanes[:0]
	for _, l := range lanes {
		if len(l) > 0 {
			used = append(used, l)
		}
	}
	return used
}

// laneOf is the lane of product p among n: FNV-1a over its 16 bytes, so that products
// whose UUIDs share their last bytes (version 1 UUIDs of one host) still spread.
func laneOf(p domain.ProductID, n int) int {
	h := uint64(14695981039346656037)
	for _, b := range p {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return int(h % uint64(n))
}
