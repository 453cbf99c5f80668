package wire

import (
	"bytes"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"

	kmblog "github.com/kmb-db/kmb/store/log"
)

var update = flag.Bool("update", false, "rewrite golden files and fuzz seed corpora in testdata")

// testOp is a small deterministic op numbered n.
func testOp(n uint64, entries int) *kmblog.Op {
	op := &kmblog.Op{
		Op:            n,
		View:          3,
		Timestamp:     1_700_000_000_000_000_000 + int64(n),
		Tenant:        "acme",
		FirstPosition: 10 * n,
		ClientID:      7,
		RequestID:     n + 100,
	}
	for i := range entries {
		op.Entries = append(op.Entries, kmblog.Entry{
			Key:   fmt.Sprintf("key-%d", i),
			Value: fmt.Appendf(nil, `{"n":%d}`, i),
		})
	}
	return op
}

// goldenMessage is the message whose encoding is pinned in
// testdata/message_v1.golden: every field set, two ops. Changing the
// encoding means a new version, not a new golden file.
func goldenMessage() *Message {
	return &Message{
		Type:        TypeDoViewChange,
		From:        2,
		To:          1,
		Epoch:       3,
		View:        7,
		LogView:     5,
		Op:          301,
		Commit:      299,
		Nonce:       0xdeadbeef,
		Flags:       FlagNormal | FlagFresh,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Ops:         []*kmblog.Op{testOp(300, 2), testOp(301, 0)},
	}
}

// messagesOfEveryType returns one realistic message per type, in the shape
// DecodeMessage produces (nil rather than empty Ops).
func messagesOfEveryType() []Message {
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	return []Message{
		{Type: TypePrepare, From: 1, To: 2, View: 4, Op: 11, Commit: 9, TraceParent: tp, Ops: []*kmblog.Op{testOp(10, 3), testOp(11, 1)}},
		{Type: TypePrepareOK, From: 2, To: 1, View: 4, Op: 11},
		{Type: TypeCommit, From: 1, To: 3, View: 4, Op: 11, Commit: 11},
		{Type: TypeStartViewChange, From: 3, To: 2, View: 5, Commit: 11},
		{Type: TypeDoViewChange, From: 3, To: 2, View: 5, LogView: 4, Op: 12, Commit: 11, Ops: []*kmblog.Op{testOp(12, 2)}},
		{Type: TypeStartView, From: 2, To: 1, View: 5, Op: 12, Commit: 11, Ops: []*kmblog.Op{testOp(12, 2)}},
		{Type: TypeGetOps, From: 1, To: 2, View: 5, Op: 3},
		{Type: TypeOps, From: 2, To: 1, View: 5, Commit: 11, Ops: []*kmblog.Op{testOp(3, 1), testOp(4, 0), testOp(5, 4)}},
		{Type: TypeRecovery, From: 1, To: 3, Nonce: 0x1234_5678_9abc_def0},
		{Type: TypeRecoveryResponse, From: 3, To: 1, View: 5, LogView: 5, Op: 12, Commit: 11, Nonce: 0x1234_5678_9abc_def0, Flags: FlagNormal},
		{Type: TypeStateTransfer, From: 2, To: 1, Epoch: 1, View: 5, Op: 900, Commit: 1200, Flags: FlagNormal},
		{Type: TypeGetCheckpoint, From: 1, To: 2, Op: 900, LogView: 1024, Commit: 1 << 20, Nonce: 77},
		{Type: TypeCheckpointChunk, From: 2, To: 1, Op: 1024, LogView: 3 << 20, Commit: 1 << 20, Nonce: 77, Data: []byte("KMBCKPT chunk bytes")},
	}
}

// assertMessageEqual fails unless got equals want field by field, ops
// included.
func assertMessageEqual(t *testing.T, got, want *Message) {
	t.Helper()
	// A decoded message keeps each op's encoding: exactly AppendOp's.
	if got.Raw != nil {
		if len(got.Raw) != len(got.Ops) {
			t.Fatalf("%d raw encodings for %d ops", len(got.Raw), len(got.Ops))
		}
		for i, op := range got.Ops {
			if !bytes.Equal(got.Raw[i], kmblog.AppendOp(nil, op)) {
				t.Fatalf("op %d: raw encoding %x, AppendOp %x", i, got.Raw[i], kmblog.AppendOp(nil, op))
			}
		}
		c := *got
		c.Raw = want.Raw
		got = &c
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("messages differ:\n got %s\nwant %s", describe(got), describe(want))
	}
}

// describe prints a message with its ops expanded, for failure output.
func describe(m *Message) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%+v", *m)
	for i, op := range m.Ops {
		fmt.Fprintf(&sb, "\n  op %d: %+v", i, op)
	}
	return sb.String()
}
