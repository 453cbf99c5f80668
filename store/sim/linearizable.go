package sim

import (
	"time"

	"github.com/anishathalye/porcupine"
)

// operation is one completed client request.
type operation struct {
	client     uint64
	put        bool
	key, value string
	result     string
	call, ret  int
}

type kvInput struct {
	put        bool
	key, value string
}

// kvModel is a register per key; porcupine checks each key separately.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	Equal: func(a, b any) bool { return a == b },
}

func (w *world) checkLinearizable() {
	ops := make([]porcupine.Operation, len(w.history))
	for i, o := range w.history {
		ops[i] = porcupine.Operation{
			ClientId: int(o.client),
			Input:    kvInput{put: o.put, key: o.key, value: o.value},
			Call:     int64(o.call),
			Output:   o.result,
			Return:   int64(o.ret),
		}
	}
	w.checked = len(ops)
	switch porcupine.CheckOperationsTimeout(kvModel, ops, 20*time.Second) {
	case porcupine.Illegal:
		w.fail("linearizability: the history of %d client operations is not linearizable", len(ops))
	case porcupine.Unknown:
		w.fail("linearizability: the checker timed out on %d operations", len(ops))
	}
}
