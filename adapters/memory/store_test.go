package memory_test

import (
	"testing"

	"warehouse/adapters/memory"
	"warehouse/domain"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

func TestStoreContract(t *testing.T) {
	shared := memory.NewStore()
	portstest.StoreWithFaults(t, func(*testing.T) ports.Store { return shared }, portstest.Faults{
		FailStockWrites: func(t *testing.T, k domain.StockKey) func() {
			restore := shared.FailStockWrites(k)
			t.Cleanup(restore)
			return restore
		},
	})
}

func TestHistoryContract(t *testing.T) {
	shared := memory.NewStore()
	portstest.History(t, func(*testing.T) ports.Store { return shared })
}

func TestChangeLogContract(t *testing.T) {
	portstest.ChangeLog(t, memory.NewStore())
}
