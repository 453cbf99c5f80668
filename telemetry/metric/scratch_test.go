package metric

import (
	"fmt"
	"testing"
	"unsafe"
)

func TestScratchShards(t *testing.T) {
	h := NewRegistry().NewHistogram("h", "", durationOpts())
	fmt.Println("stride", h.stride, "mask", h.mask, "len", len(h.cells), "addr%128", uintptr(unsafe.Pointer(&h.cells[0]))%128)
}
