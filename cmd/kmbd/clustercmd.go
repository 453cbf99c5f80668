package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/kmb-db/kmb/store/node"
)

const clusterUsage = `usage:
  kmbd cluster show --addr HOST:PORT
  kmbd cluster reconfigure --addr HOST:PORT --replicas 1=h:p,2=h:p,4=h:p

show prints the cluster's configuration as a node knows it: its epoch and
replicas (GET /v1/cluster/config).

reconfigure commits a new configuration, the whole replica list with each
replication address, through the leader (a follower's answer redirects to
it) and waits until it committed (POST /v1/cluster/config; the admin right
once tokens exist). New replicas must already run, started with --join and
the new --replicas list; they catch up, then count in quorums. Replicas the
list leaves out stop serving once they learn of it. One change at a time;
to remove the leader, send the change to another node after stopping it.

Exit status: 0 done, 1 refused or failed, 2 bad arguments.
`

// runCluster is `kmbd cluster`.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return exitUsage
	}
	switch args[0] {
	case "show":
		return clusterShow(ctx, args[1:], stdout, stderr)
	case "reconfigure":
		return clusterReconfigure(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "kmbd cluster: unknown command %q\n%s", args[0], clusterUsage)
	return exitUsage
}

func clusterShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd cluster show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNodeFlags(fs)
	if code, ok := parseClusterFlags(fs, args, nf, stderr); !ok {
		return code
	}
	c, base, err := nf.client()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster show: %v\n", err)
		return exitUsage
	}
	resp, err := nf.get(ctx, c, base+"/v1/cluster/config")
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster show: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, err = io.Copy(stdout, resp.Body)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster show: %v\n", err)
		return 1
	}
	return 0
}

func clusterReconfigure(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kmbd cluster reconfigure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNodeFlags(fs)
	replicas := fs.String("replicas", "", "the new configuration, every replica as id=host:port (its replication address), comma-separated")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the change to commit")
	if code, ok := parseClusterFlags(fs, args, nf, stderr); !ok {
		return code
	}
	members, err := node.ParseMembers(*replicas)
	if err == nil && len(members) == 0 {
		err = errors.New("--replicas is required")
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return exitUsage
	}
	body := struct {
		Replicas []map[string]any `json:"replicas"`
	}{}
	for _, m := range members {
		body.Replicas = append(body.Replicas, map[string]any{"id": m.ID, "addr": m.Addr})
	}
	payload, _ := json.Marshal(body)
	c, base, err := nf.client()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return exitUsage
	}
	// A follower redirects to the leader, maybe on another host: the token
	// goes along (net/http drops it across hosts by default).
	c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		if h := via[0].Header.Get("Authorization"); h != "" {
			r.Header.Set("Authorization", h)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The client follows a follower's 307 to the leader with the body.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/cluster/config", bytes.NewReader(payload))
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return exitUsage
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
	req.Header.Set("Content-Type", "application/json")
	if token := nf.bearer(os.Getenv); token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Code string }
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			fmt.Fprintf(stderr, "kmbd cluster reconfigure: refused (%s %s): %s\n", resp.Status, e.Code, e.Error)
		} else {
			fmt.Fprintf(stderr, "kmbd cluster reconfigure: %s: %s\n", resp.Status, strings.TrimSpace(string(out)))
		}
		return 1
	}
	stdout.Write(out)
	return 0
}

func parseClusterFlags(fs *flag.FlagSet, args []string, nf nodeFlags, stderr io.Writer) (int, bool) {
	fs.Usage = func() { fmt.Fprint(stderr, clusterUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	if *nf.addr == "" {
		fmt.Fprintf(stderr, "%s: --addr is required\n", fs.Name())
		return exitUsage, false
	}
	return 0, true
}
