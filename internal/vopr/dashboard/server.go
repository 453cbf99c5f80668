package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"time"

	"github.com/kmb-db/kmb/internal/vopr"
)

// Source is what the dashboard shows: *vopr.Runner.
type Source interface {
	Snapshot() vopr.State
	Updates() <-chan struct{}
}

// Options tune the event stream. Zero fields take the defaults.
type Options struct {
	// MinInterval is the least time between two frames of one stream
	// (default 250ms): the simulator changes its state a thousand times a
	// second, and a person reads four frames a second at most.
	MinInterval time.Duration
	// Keepalive is how often an idle stream sends a comment (default
	// 15s), so that proxies and browsers keep it open once the runs end.
	Keepalive time.Duration
}

// writeTimeout bounds each write: a whole answer, or one frame of an
// event stream.
const writeTimeout = 10 * time.Second

//go:embed assets
var assets embed.FS

// asset is one embedded file and its content type.
type asset struct {
	body  []byte
	ctype string
}

func loadAssets() map[string]asset {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	out := map[string]asset{}
	entries, err := assets.ReadDir("assets")
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	for _, e := range entries {
		b, err := assets.ReadFile("assets/" + e.Name())
		if err != nil {
			panic(err)
		}
		out[e.Name()] = asset{body: b, ctype: types[path.Ext(e.Name())]}
	}
	return out
}

// Handler returns the dashboard's routes: GET /, /assets/{file},
// /api/state and /events.
func Handler(src Source, opts Options) http.Handler {
	if opts.MinInterval <= 0 {
		opts.MinInterval = 250 * time.Millisecond
	}
	if opts.Keepalive <= 0 {
		opts.Keepalive = 15 * time.Second
	}
	s := &server{src: src, opts: opts, assets: loadAssets()}
	mux := http.NewServeMux()
	mux.Handle("/{$}", get(s.file("index.html")))
	mux.Handle("/assets/{name}", get(http.HandlerFunc(s.asset)))
	mux.Handle("/api/state", get(http.HandlerFunc(s.state)))
	mux.Handle("/events", get(http.HandlerFunc(s.events)))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such page: "+r.URL.Path)
	}))
	return secure(mux)
}

type server struct {
	src    Source
	opts   Options
	assets map[string]asset
}

// secure sets the headers every answer carries; the policy lets the page
// load nothing that is not served here.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// get answers 405 to any method but GET and HEAD.
func get(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; use GET")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

func (s *server) file(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveAsset(w, name) })
}

func (s *server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "index.html" {
		http.Redirect(w, r, "/", http.StatusMovedPermanently)
		return
	}
	s.serveAsset(w, name)
}

func (s *server) serveAsset(w http.ResponseWriter, name string) {
	a, ok := s.assets[name]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such asset: "+name)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	// The assets change only with the binary; the page is small.
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(a.body)
}

func (s *server) state(w http.ResponseWriter, r *http.Request) {
	b, err := json.Marshal(s.src.Snapshot())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// events streams the State: a frame at once, then one whenever it
// changed, at most one every MinInterval, and a comment every Keepalive
// while nothing does.
//
//	id: <version>
//	event: state
//	data: <the State as one line of JSON>
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	ctx := r.Context()
	write := func(frame []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(frame); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	keepalive := time.NewTicker(s.opts.Keepalive)
	defer keepalive.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	var sent uint64
	first := true
	for {
		// Ask for the next change before reading, so none is missed.
		upd := s.src.Updates()
		if st := s.src.Snapshot(); first || st.Version != sent {
			b, err := json.Marshal(st)
			if err != nil {
				return
			}
			if !write(fmt.Appendf(nil, "id: %d\nevent: state\ndata: %s\n\n", st.Version, b)) {
				return
			}
			sent, first = st.Version, false
			keepalive.Reset(s.opts.Keepalive)
			pace.Reset(s.opts.MinInterval)
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-upd:
		case <-keepalive.C:
			if !write([]byte(": keepalive\n\n")) {
				return
			}
		}
	}
}

// Serve serves h on ln until ctx is done, then ends the event streams and
// shuts the server down.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout, // the event stream moves its own deadline
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	cancel() // the streams' request contexts end, so Shutdown need not wait for them
	sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
