package postgres_test

import (
	"testing"

	"warehouse/adapters/postgres"
	"warehouse/adapters/postgres/pgtest"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

func TestStoreContract(t *testing.T) {
	store := postgres.NewStore(pgtest.MustOpen(t, pgtest.MustDatabase(t)))
	portstest.Store(t, func(*testing.T) ports.Store { return store })
}
