package http_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	httpadapter "warehouse/adapters/http"
	"warehouse/adapters/memory"
	"warehouse/application"
	"warehouse/domain"
	"warehouse/ports/portstest"
)

// streamPage follows the change stream with the browser's own EventSource, from the
// start of the log, and writes each stock event it receives into the page; after two it
// closes the stream and says done.
const streamPage = `<!doctype html><html><body><pre id="out"></pre><script>
const out = document.getElementById("out");
let n = 0;
const es = new EventSource("/api/stream?after=0");
es.addEventListener("stock", (e) => {
  const s = JSON.parse(e.data);
  out.textContent += "stock id=" + e.lastEventId + " quantity=" + s.quantity + "\n";
  if (++n === 2) { es.close(); out.textContent += "done\n"; }
});
es.onerror = () => { out.textContent += "error readyState=" + es.readyState + "\n"; };
</script></body></html>`

// TestStreamInBrowser: Chromium's EventSource receives a change replayed from the log
// and one committed while it listens. The page comes from a test server that passes
// /api/ on to the service, so that the stream is same-origin as it is behind a proxy.
func TestStreamInBrowser(t *testing.T) {
	needChromium(t)
	store := memory.NewStore()
	stream := application.NewStream(store, application.StreamOptions{}, nil)
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = stream.Run(sctx) }()
	s, _ := mustServer(t, application.NewQueries(store), httpadapter.Options{Stream: httpadapter.StreamOptions{Stream: stream}}, httpadapter.Readiness{})
	api, err := url.Parse(mustServe(t, s))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", httputil.NewSingleHostReverseProxy(api))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(streamPage))
	})
	page := httptest.NewServer(mux)
	defer page.Close()

	w, p := domain.WarehouseID(uuid.New()), domain.ProductID(uuid.New())
	mustStoreEvents(t, store, portstest.Supply(w, p, 11)) // replayed: before the page opens
	go func() {
		// Live: once the page's EventSource is connected.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if stream.Stats().Clients > 0 {
				_, _ = store.Apply(context.Background(), []domain.Event{portstest.Supply(w, p, 31)})
				return
			}
		}
	}()

	got := mustDumpDOM(t, page.URL+"/")
	for _, want := range []string{"stock id=2 quantity=11\n", "stock id=4 quantity=42\n", "done\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%.3000s", got)
	}
}
