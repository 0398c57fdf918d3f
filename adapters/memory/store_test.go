package memory_test

import (
	"testing"

	"warehouse/adapters/memory"
	"warehouse/ports"
	"warehouse/ports/portstest"
)

func TestStoreContract(t *testing.T) {
	shared := memory.NewStore()
	portstest.Store(t, func(*testing.T) ports.Store { return shared })
}

func TestHistoryContract(t *testing.T) {
	shared := memory.NewStore()
	portstest.History(t, func(*testing.T) ports.Store { return shared })
}
