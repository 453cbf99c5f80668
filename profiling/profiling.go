package profiling

import (
	"bytes"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// Config controls profiling. The zero value disables the endpoints.
type Config struct {
	// Enabled mounts /debug/pprof/*. TOML: telemetry.pprof_enabled. Default true.
	Enabled bool
	// BlockProfileRate is passed to runtime.SetBlockProfileRate: 0 disables
	// the block profile, 1 records every blocking event, N samples one per N
	// nanoseconds blocked. TOML: telemetry.block_profile_rate. Default 0.
	BlockProfileRate int
	// MutexProfileFraction is passed to runtime.SetMutexProfileFraction: 0
	// disables the mutex profile, N samples one contention event in N.
	// TOML: telemetry.mutex_profile_fraction. Default 0.
	MutexProfileFraction int
	// MaxSeconds bounds ?seconds= of CPU profiles and traces. Default 60.
	MaxSeconds int
	// LoopbackOnly answers 403 to clients that do not connect from a
	// loopback address: kmbd sets it when the endpoint listens beyond
	// loopback without authentication, since profiles reveal memory
	// contents and cost CPU.
	LoopbackOnly bool
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.BlockProfileRate < 0 {
		return fmt.Errorf("telemetry.block_profile_rate = %d: must be >= 0", c.BlockProfileRate)
	}
	if c.MutexProfileFraction < 0 {
		return fmt.Errorf("telemetry.mutex_profile_fraction = %d: must be >= 0", c.MutexProfileFraction)
	}
	if c.MaxSeconds < 0 || c.MaxSeconds > 3600 {
		return fmt.Errorf("profiling max seconds = %d: accepted 0..3600", c.MaxSeconds)
	}
	return nil
}

// Mount applies the runtime profiling rates and, when cfg.Enabled, registers
// the pprof endpoints on mux. The rates are process-wide runtime settings, so
// Mount should be called once per process.
func Mount(mux *http.ServeMux, cfg Config) {
	runtime.SetBlockProfileRate(cfg.BlockProfileRate)
	runtime.SetMutexProfileFraction(cfg.MutexProfileFraction)
	if !cfg.Enabled {
		return
	}
	maxSeconds := cfg.MaxSeconds
	if maxSeconds == 0 {
		maxSeconds = 60
	}
	handle := func(pattern string, h http.Handler) {
		if cfg.LoopbackOnly {
			h = loopbackOnly(h)
		}
		mux.Handle(pattern, h)
	}
	handle("GET /debug/pprof/{$}", http.HandlerFunc(index))
	handle("GET /debug/pprof/cmdline", http.HandlerFunc(cmdline))
	handle("GET /debug/pprof/profile", cpuProfile{max: maxSeconds})
	handle("GET /debug/pprof/trace", execTrace{max: maxSeconds})
	handle("GET /debug/pprof/{name}", http.HandlerFunc(named))
}

// loopbackOnly serves h to clients connecting from a loopback address and
// answers 403 with a JSON reason to the others.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.Unmap().IsLoopback() {
			fail(w, http.StatusForbidden, "profiles are served to loopback clients only: this endpoint listens beyond loopback without authentication; profile from the host, or set telemetry.web_config_file with basic_auth_users")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// extendWriteDeadline lets a response that takes d to produce outlive the
// server's WriteTimeout, which is sized for scrapes, not for profiles.
func extendWriteDeadline(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + 30*time.Second))
}

// seconds parses ?seconds=, defaulting to def and refusing values above max.
func seconds(r *http.Request, def, max int) (time.Duration, error) {
	s := r.URL.Query().Get("seconds")
	if s == "" {
		return time.Duration(def) * time.Second, nil
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > float64(max) {
		return 0, fmt.Errorf("seconds=%q: accepted a number in (0, %d]", s, max)
	}
	return time.Duration(n * float64(time.Second)), nil
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", msg)
}

func attachment(w http.ResponseWriter, name string) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
}

// sleep waits for d or until the client goes away.
func sleep(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

type cpuProfile struct{ max int }

func (h cpuProfile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, 30, h.max)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	extendWriteDeadline(w, d)
	// Buffer the profile so a failure to start can still be reported as an
	// error status rather than a truncated body.
	var buf bytes.Buffer
	if err := pprof.StartCPUProfile(&buf); err != nil {
		fail(w, http.StatusConflict, "cannot start CPU profile: "+err.Error())
		return
	}
	sleep(r, d)
	pprof.StopCPUProfile()
	attachment(w, "profile")
	_, _ = w.Write(buf.Bytes())
}

type execTrace struct{ max int }

func (h execTrace) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, err := seconds(r, 1, h.max)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	extendWriteDeadline(w, d)
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		fail(w, http.StatusConflict, "cannot start trace: "+err.Error())
		return
	}
	sleep(r, d)
	trace.Stop()
	attachment(w, "trace")
	_, _ = w.Write(buf.Bytes())
}

func named(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil {
		fail(w, http.StatusNotFound, "unknown profile "+strconv.Quote(name))
		return
	}
	debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
	if name == "heap" && r.URL.Query().Get("gc") != "" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		attachment(w, name)
	}
	var buf bytes.Buffer
	if err := p.WriteTo(&buf, debug); err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return
	}
	_, _ = w.Write(buf.Bytes())
}

func cmdline(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(os.Args, "\x00"))
}

func index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<html><head><title>/debug/pprof/</title></head><body><h1>/debug/pprof/</h1><table>\n")
	for _, p := range pprof.Profiles() {
		name := html.EscapeString(p.Name())
		fmt.Fprintf(&b, "<tr><td>%d</td><td><a href=\"%s?debug=1\">%s</a></td></tr>\n", p.Count(), name, name)
	}
	b.WriteString("</table><p><a href=\"profile\">profile</a> (CPU, ?seconds=30) · <a href=\"trace?seconds=1\">trace</a> · <a href=\"cmdline\">cmdline</a></p></body></html>\n")
	_, _ = w.Write([]byte(b.String()))
}
