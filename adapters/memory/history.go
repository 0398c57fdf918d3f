package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"warehouse/domain"
	"warehouse/ports"
)

// The ledger's past, read by scanning what the store holds: fine for tests and dev.

// history returns the events of key in business-time order (by position). s.mu is held.
func (s *Store) history(k domain.StockKey) []*domain.StoredEvent {
	events := slices.Clone(s.events[k])
	slices.SortFunc(events, func(a, b *domain.StoredEvent) int { return positionOf(a).Compare(positionOf(b)) })
	return events
}

func positionOf(e *domain.StoredEvent) domain.Position {
	return domain.Position{Timestamp: e.Timestamp, Seq: e.Seq}
}

// asOf folds the events of k at or before t; ok is false when there is none. s.mu is held.
func (s *Store) asOf(k domain.StockKey, t time.Time) (domain.StockAsOf, bool) {
	st := domain.StockAsOf{WarehouseID: k.Warehouse, ProductID: k.Product, AsOf: t}
	found := false
	for _, e := range s.events[k] {
		if e.Timestamp.After(t) {
			continue
		}
		found = true
		st.Quantity += e.Delta()
		if e.RecordedAt.After(st.UpdatedAt) {
			st.UpdatedAt = e.RecordedAt
		}
	}
	return st, found
}

// StockAsOf folds the events of one stock row at or before asOf.
func (s *Store) StockAsOf(ctx context.Context, w domain.WarehouseID, p domain.ProductID, asOf time.Time) (domain.StockAsOf, error) {
	if err := ctx.Err(); err != nil {
		return domain.StockAsOf{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.asOf(domain.StockKey{Warehouse: w, Product: p}, asOf)
	if !ok {
		return domain.StockAsOf{}, fmt.Errorf("stock of product %s at warehouse %s as of %s: %w", p, w, asOf.Format(time.RFC3339Nano), domain.ErrNotFound)
	}
	return st, nil
}

// WarehouseStockAsOf is StockAsOf for the products of one warehouse, by product id.
func (s *Store) WarehouseStockAsOf(ctx context.Context, f ports.StockFilter, asOf time.Time) (ports.StockAsOfPage, error) {
	if err := ctx.Err(); err != nil {
		return ports.StockAsOfPage{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	var items []domain.StockAsOf
	for k := range s.events {
		if k.Warehouse != f.Warehouse || f.After != nil && bytes.Compare(k.Product[:], f.After[:]) <= 0 {
			continue
		}
		if st, ok := s.asOf(k, asOf); ok {
			items = append(items, st)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(items, func(a, b domain.StockAsOf) int { return bytes.Compare(a.ProductID[:], b.ProductID[:]) })
	var page ports.StockAsOfPage
	if len(items) > f.Limit {
		items = items[:f.Limit]
		next := items[len(items)-1].ProductID
		page.Next = &next
	}
	page.Items = items
	return page, nil
}

// StockHistory lists the events of one stock row oldest first with running balances.
func (s *Store) StockHistory(ctx context.Context, f ports.HistoryFilter) (ports.HistoryPage, error) {
	if err := ctx.Err(); err != nil {
		return ports.HistoryPage{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	events := s.history(domain.StockKey{Warehouse: f.Warehouse, Product: f.Product})
	s.mu.Unlock()
	var (
		page    ports.HistoryPage
		balance int64
	)
	for _, e := range events {
		balance += e.Delta()
		pos := positionOf(e)
		switch {
		case !f.Since.IsZero() && e.Timestamp.Before(f.Since),
			!f.Until.IsZero() && !e.Timestamp.Before(f.Until),
			f.After != nil && pos.Compare(*f.After) <= 0:
			continue
		}
		if len(page.Items) == f.Limit {
			last := page.Items[len(page.Items)-1].Position
			page.Next = &last
			break
		}
		page.Items = append(page.Items, domain.HistoryEntry{
			MovementID: e.MovementID, Kind: e.Kind, Source: e.Source, EventID: e.ID, Position: pos,
			RecordedAt: e.RecordedAt, Delta: e.Delta(), Balance: balance,
		})
	}
	return page, nil
}

// Routes adds up the completed movements of each (sender, receiver) pair in the window.
func (s *Store) Routes(ctx context.Context, f ports.RouteFilter) (ports.RoutePage, error) {
	if err := ctx.Err(); err != nil {
		return ports.RoutePage{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	type pair struct{ from, to domain.WarehouseID }
	groups := make(map[pair][]domain.Movement)
	s.mu.Lock()
	for m := range s.ledger.Movements() {
		if m.Status() != domain.Completed {
			continue
		}
		d, a := m.Departure, m.Arrival
		switch {
		case d.Timestamp.Before(f.Since), !d.Timestamp.Before(f.Until),
			f.From != nil && d.WarehouseID != *f.From,
			f.To != nil && a.WarehouseID != *f.To,
			f.Product != nil && m.ProductID != *f.Product:
			continue
		}
		k := pair{d.WarehouseID, a.WarehouseID}
		groups[k] = append(groups[k], m.Clone())
	}
	s.mu.Unlock()
	var routes []domain.Route
	for k, ms := range groups {
		r := domain.RouteOf(k.from, k.to, ms)
		if f.After != nil && r.Compare(domain.Route{Movements: f.After.Movements, From: f.After.From, To: f.After.To}) <= 0 {
			continue
		}
		routes = append(routes, r)
	}
	slices.SortFunc(routes, domain.Route.Compare)
	var page ports.RoutePage
	if len(routes) > f.Limit {
		routes = routes[:f.Limit]
		last := routes[len(routes)-1]
		page.Next = &ports.RouteCursor{Movements: last.Movements, From: last.From, To: last.To}
	}
	page.Items = routes
	return page, nil
}

// InTransit lists what left w and has not arrived, by product id.
func (s *Store) InTransit(ctx context.Context, w domain.WarehouseID) ([]domain.TransitLoad, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	byProduct := make(map[domain.ProductID]*domain.TransitLoad)
	s.mu.Lock()
	for m := range s.ledger.Movements() {
		if m.Status() != domain.InTransit || m.Departure.WarehouseID != w {
			continue
		}
		t := byProduct[m.ProductID]
		if t == nil {
			t = &domain.TransitLoad{ProductID: m.ProductID, OldestDeparture: m.Departure.Timestamp}
			byProduct[m.ProductID] = t
		}
		t.Movements++
		t.Quantity += m.Departure.Quantity
		if m.Departure.Timestamp.Before(t.OldestDeparture) {
			t.OldestDeparture = m.Departure.Timestamp
		}
	}
	s.mu.Unlock()
	out := make([]domain.TransitLoad, 0, len(byProduct))
	for _, t := range byProduct {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b domain.TransitLoad) int { return bytes.Compare(a.ProductID[:], b.ProductID[:]) })
	return out, nil
}

// Event returns the stored event of that identity.
func (s *Store) Event(ctx context.Context, source, id string) (domain.StoredEvent, error) {
	if err := ctx.Err(); err != nil {
		return domain.StoredEvent{}, fmt.Errorf("%w: %w", ports.ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[domain.Identity{Source: source, ID: id}]
	if !ok {
		return domain.StoredEvent{}, fmt.Errorf("event %q of source %q: %w", id, source, domain.ErrNotFound)
	}
	return *e, nil
}
