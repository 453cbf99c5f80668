package transport

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kmb-db/kmb/certs"
	"github.com/kmb-db/kmb/internal/testpki"
	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/store/wire"
)

// BenchmarkTransport measures messages per second from one transport to
// another over loopback. The sender keeps at most window messages in
// flight, below the queue depth, so that nothing is dropped and the number
// is the transport's throughput, not its shedding rate.
func BenchmarkTransport(b *testing.B) {
	op := &kmblog.Op{Op: 1000, View: 2, Timestamp: 1_700_000_000_000_000_000, Tenant: "acme", FirstPosition: 100_000, ClientID: 42, RequestID: 7}
	for i := range 100 {
		op.Entries = append(op.Entries, kmblog.Entry{Key: fmt.Sprintf("user:%06d", i), Value: bytes.Repeat([]byte("v"), 100)})
	}
	cases := []struct {
		name string
		m    wire.Message
	}{
		{"prepare_100x100B", wire.Message{Type: wire.TypePrepare, To: 2, View: 2, Op: 1000, Commit: 998,
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Ops: []*kmblog.Op{op}}},
		{"prepare_ok", wire.Message{Type: wire.TypePrepareOK, To: 2, View: 2, Op: 1000}},
	}
	// The authentication modes: none (the names BENCHMARKS.md reads), a
	// shared secret (a MAC per frame), mutual TLS.
	modes := []struct {
		name string
		set  func(b *testing.B, ca *testpki.CA, c *Config)
	}{
		{"", func(*testing.B, *testpki.CA, *Config) {}},
		{"_secret", func(_ *testing.B, _ *testpki.CA, c *Config) { c.Security.Secret = secretOf(1) }},
		{"_tls", func(b *testing.B, ca *testpki.CA, c *Config) { c.Security.TLS = benchTLS(b, ca) }},
	}
	for _, bc := range cases {
		for _, mode := range modes {
			b.Run(bc.name+mode.name, func(b *testing.B) {
				ca := testpki.NewCA(b, "bench CA")
				nodes := startCluster(b, 2, nil, func(c *Config) { c.PingInterval = DefaultPingInterval; mode.set(b, ca, c) })
				waitConnected(b, nodes)
				from, to := nodes[0], nodes[1]
				const window = 1024
				credits := make(chan struct{}, window)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for range b.N {
						<-to.tr.Recv()
						<-credits
					}
				}()
				b.SetBytes(int64(wire.EncodedSize(&bc.m)))
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					credits <- struct{}{}
					from.tr.Send(bc.m)
				}
				select {
				case <-done:
				case <-time.After(waitFor):
					b.Fatalf("messages lost: %v dropped", from.metric("kmb_replication_send_dropped_total", "2"))
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

// benchTLS is a node identity for 127.0.0.1 from ca.
func benchTLS(b *testing.B, ca *testpki.CA) *certs.Reloader {
	l := ca.Issue(b, "node", "node", "127.0.0.1")
	r, err := certs.New(certs.Files{CertFile: l.CertFile, KeyFile: l.KeyFile, CAFile: ca.CertFile}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return r
}
