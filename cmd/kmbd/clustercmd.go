package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kmb-db/kmb/client"
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
	c, err := nf.apiClient()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster show: %v\n", err)
		return exitUsage
	}
	defer c.Close()
	doc, err := c.ClusterConfig(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster show: %v\n", err)
		return 1
	}
	stdout.Write(doc)
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
	var replicaList []client.Replica
	for _, m := range members {
		replicaList = append(replicaList, client.Replica{ID: m.ID, Addr: m.Addr})
	}
	c, err := nf.apiClient()
	if err != nil {
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return exitUsage
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The client follows a follower's 307 to the leader, token included.
	doc, err := c.Reconfigure(ctx, replicaList)
	var e *client.Error
	switch {
	case errors.As(err, &e) && e.Status >= 400 && e.Code != "":
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: refused (%d %s %s): %s\n", e.Status, http.StatusText(e.Status), e.Code, e.Message)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "kmbd cluster reconfigure: %v\n", err)
		return 1
	}
	stdout.Write(doc)
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
