package domain

import (
	"github.com/google/uuid"
)

// MovementID identifies a movement: the pair of events that share it.
type MovementID uuid.UUID

// WarehouseID identifies a warehouse.
type WarehouseID uuid.UUID

// ProductID identifies a product.
type ProductID uuid.UUID

// String returns the canonical lowercase form.
func (id MovementID) String() string { return uuid.UUID(id).String() }

// String returns the canonical lowercase form.
func (id WarehouseID) String() string { return uuid.UUID(id).String() }

// String returns the canonical lowercase form.
func (id ProductID) String() string { return uuid.UUID(id).String() }

// ParseMovementID parses a canonical 36-character UUID in any letter case.
func ParseMovementID(s string) (MovementID, error) {
	u, err := parseCanonicalUUID("movement_id", s)
	return MovementID(u), err
}

// ParseWarehouseID parses a canonical 36-character UUID in any letter case.
func ParseWarehouseID(s string) (WarehouseID, error) {
	u, err := parseCanonicalUUID("warehouse_id", s)
	return WarehouseID(u), err
}

// ParseProductID parses a canonical 36-character UUID in any letter case.
func ParseProductID(s string) (ProductID, error) {
	u, err := parseCanonicalUUID("product_id", s)
	return ProductID(u), err
}

// parseCanonicalUUID accepts only the 8-4-4-4-12 hexadecimal form: uuid.Parse alone
// would also take braces, a urn:uuid: prefix and the 32-digit form.
func parseCanonicalUUID(field, s string) (uuid.UUID, error) {
	const rule = "is not a canonical UUID"
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return uuid.UUID{}, invalidField(field, rule, s)
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return uuid.UUID{}, invalidField(field, rule, s)
	}
	return u, nil
}

// clip keeps error messages short when the input is large.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
