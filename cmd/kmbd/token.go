package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/kmb-db/kmb/auth"
)

const tokenUsage = `usage: kmbd token new --name NAME --tenants a,b|* --rights read,write,audit,admin

Prints a fresh random secret, once, and the [[token]] table to add to the
tokens file (auth.tokens_file). Only the secret's SHA-256 goes in the file;
give the secret to the client, which sends "Authorization: Bearer <secret>".
Reload the file with SIGHUP on every node.

`

// runToken is `kmbd token`: 0 on success, 2 on bad arguments.
func runToken(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "new" {
		fmt.Fprint(stderr, tokenUsage)
		return 2
	}
	fs := flag.NewFlagSet("kmbd token new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage); fs.PrintDefaults() }
	name := fs.String("name", "", "the principal, recorded with every entry it writes")
	tenants := fs.String("tenants", "", "tenants it may use, comma-separated, or * for all")
	rights := fs.String("rights", "", "what it may do, comma-separated: read, write, audit, admin")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmbd token new: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	secret, sha := auth.NewSecret()
	block := auth.Block(*name, sha, splitList(*tenants), splitList(*rights))
	// The printed block must load: check it as the node will.
	if _, err := auth.Parse([]byte(block)); err != nil {
		_, msg, _ := strings.Cut(err.Error(), ": token 1: ")
		fmt.Fprintf(stderr, "kmbd token new: %s\n", msg)
		return 2
	}
	fmt.Fprintf(stdout, "# Secret of %s, shown once: clients send \"Authorization: Bearer <secret>\".\n# %s\n\n%s", *name, secret, block)
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
