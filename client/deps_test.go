package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The client is the standard library and the API's name rules only:
// importing it brings nothing of the server, its telemetry or any other
// module into a program.
func TestStdlibOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/kmb-db/kmb/client" && dep != "github.com/kmb-db/kmb/internal/apirules" {
			t.Errorf("client depends on %s", dep)
		}
	}
}
