// Package audit exports a range of the log as a tamper-evident file and
// verifies such files: kmbd audit export and kmbd audit verify, and the
// API's GET /v1/audit.
//
// # What a file holds
//
// One record per entry (an op without entries, such as a backup marker,
// is one record without key and value) with its op's fields: position,
// op number, view, kind, tenant, key, value (the stored JSON, byte for
// byte), commit timestamp, principal, client and request ids, the op's
// chain hash and the chain hash of the op before it. Around the records:
// the format version, the node and the cluster (the chain hash of op 1)
// they came from, the time range and tenant asked for, the chain hash of
// the op before the first exported op and of the last one, and the counts.
//
// Every op's chain hash is SHA-256 of the previous op's chain hash and the
// op's canonical encoding (store/log), so Verify rebuilds each op from its
// records and recomputes its hash: an altered, dropped or inserted entry
// changes it. In an export of every tenant the ops are contiguous and each
// one's previous chain hash is the chain hash of the op before it in the
// file, so a dropped, inserted or reordered op breaks the chain too, and
// the trailer's counts and last chain hash catch a cut-off end. An export
// of one tenant skips the other tenants' ops: each op still verifies on
// its own, and against the live cluster (VerifyLive), but only the cluster
// can say that no op of the tenant is missing between two records.
//
// # Formats
//
// json: one object, written as a stream: "kmb_audit_export" (the format
// version, 1), "node_id", "cluster", "range", "first_op", "chain_before",
// "records" (an array), then "last_op", "chain_last", "counts".
//
// ndjson: the same as lines: {"type":"header",...}, one {"type":"record",
// ...} per record, then {"type":"trailer",...}.
//
// csv: "# key: value" comment lines for the header, a header row, one row
// per record (the value column holds the stored JSON), and "# key: value"
// comment lines for the trailer.
//
// Export and Verify both run in memory bounded by the largest op, however
// long the range.
package audit
