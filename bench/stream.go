package bench

import (
	"slices"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	amqpadapter "warehouse/adapters/amqp"
	"warehouse/domain"
	"warehouse/loadgen"
)

// stream is the run's events, encoded once and published unchanged in every phase, with
// what the service must hold after storing them all and the keys the reads ask for.
type stream struct {
	msgs      []message
	project   []amqpadapter.Message // the same messages for the project's Publisher
	expected  map[domain.StockKey]int64
	stockKeys []domain.StockKey
	// firstAt is the timestamp of each stock row's first event; first and last are the
	// stream's earliest and latest timestamps.
	firstAt     map[domain.StockKey]time.Time
	first, last time.Time
	movements   []domain.MovementID
	stats       loadgen.Stats
	// warehouses and perWarehouse: see warehouseCounts.
	warehouses   []string
	perWarehouse map[string]int
}

// message is one encoded event and its routing key, as `warehouse produce` sends it.
type message struct {
	key  string
	id   string
	body []byte
}

// generate draws n events from the project's Generator with a fixed seed and no
// duplicates, so that every event must be stored and the stock at the end is known.
func generate(n int) *stream {
	interval := min(loadgen.DefaultInterval, genSpan/time.Duration(max(n, 1)))
	g := loadgen.NewGenerator(loadgen.Options{
		Warehouses:      genWarehouses,
		Products:        genProducts,
		Seed:            genSeed,
		LossShare:       genLoss,
		OutOfOrderShare: genDisorder,
		Interval:        interval,
	})
	s := &stream{msgs: make([]message, n), project: make([]amqpadapter.Message, n), firstAt: map[domain.StockKey]time.Time{}}
	seen := make(map[domain.MovementID]struct{}, n)
	for i := range n {
		e := g.Next()
		if at, ok := s.firstAt[e.StockKey()]; !ok || e.Timestamp.Before(at) {
			s.firstAt[e.StockKey()] = e.Timestamp
		}
		if s.first.IsZero() || e.Timestamp.Before(s.first) {
			s.first = e.Timestamp
		}
		if e.Timestamp.After(s.last) {
			s.last = e.Timestamp
		}
		m := message{key: "movement." + string(e.Kind), id: e.ID, body: amqpadapter.EncodeEvent(e)}
		s.msgs[i] = m
		s.project[i] = amqpadapter.Message{RoutingKey: m.key, Publishing: amqp091.Publishing{
			MessageId: m.id, AppId: "warehouse-bench", Body: m.body,
		}}
		if _, ok := seen[e.MovementID]; !ok {
			seen[e.MovementID] = struct{}{}
			s.movements = append(s.movements, e.MovementID)
		}
	}
	s.expected = g.Expected()
	s.stockKeys = make([]domain.StockKey, 0, len(s.expected))
	for k := range s.expected {
		s.stockKeys = append(s.stockKeys, k)
	}
	slices.SortFunc(s.stockKeys, domain.StockKey.Compare) // a seed gives the same keys in the same order
	s.stats = g.Stats()
	return s
}
