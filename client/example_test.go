package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/kmb-db/kmb/client"
)

// Append a batch, read a key's latest value, and read the tenant's log.
func Example() {
	cluster := mustStart(1) // a node in this process; in production, the nodes' API addresses
	defer cluster.stop()
	ctx := context.Background()

	c, err := client.New(cluster.addrs, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.Append(ctx, "acme", []client.Entry{
		{Key: "user-1", Value: json.RawMessage(`{"name":"Ada"}`)},
		{Key: "user-2", Value: json.RawMessage(`42`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("appended positions %d..%d, commit %d\n", res.FirstPosition, res.LastPosition, res.CommitNumber)

	v, err := c.Get(ctx, "acme", "user-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("user-1 = %s (position %d)\n", v.Value, v.Position)

	for e, err := range c.Read(ctx, "acme", 1) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %s %s\n", e.Position, e.Key, e.Value)
	}
	// Output:
	// appended positions 1..2, commit 1
	// user-1 = {"name":"Ada"} (position 1)
	// 1 user-1 {"name":"Ada"}
	// 2 user-2 42
}

// Writes go to the leader: given any node of the cluster, the client
// follows the redirect and goes on writing to the leader.
func ExampleClient_Append() {
	cluster := mustStart(3)
	defer cluster.stop()
	ctx := context.Background()

	c, err := client.New(cluster.followers(), client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		res, err := c.Append(ctx, "acme", []client.Entry{{Key: fmt.Sprintf("k%d", i), Value: json.RawMessage(`"v"`)}})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("position %d, %d request(s)\n", res.FirstPosition, res.Attempts)
	}
	// Output:
	// position 1, 2 request(s)
	// position 2, 1 request(s)
	// position 3, 1 request(s)
}

// A key never written is ErrNotFound.
func ExampleClient_Get() {
	cluster := mustStart(1)
	defer cluster.stop()

	c, err := client.New(cluster.addrs, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.Get(context.Background(), "acme", "nobody")
	fmt.Println(errors.Is(err, client.ErrNotFound))

	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
	}
	// Output:
	// true
	// 404 not_found
}

// Read pages through a tenant's log; other tenants' entries take positions
// in between.
func ExampleClient_Read() {
	cluster := mustStart(1)
	defer cluster.stop()
	ctx := context.Background()

	c, err := client.New(cluster.addrs, client.Options{ReadPageSize: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		for _, tenant := range []string{"acme", "globex"} {
			if _, err := c.Append(ctx, tenant, []client.Entry{{Key: "k", Value: json.RawMessage(fmt.Sprint(i))}}); err != nil {
				log.Fatal(err)
			}
		}
	}
	for e, err := range c.Read(ctx, "globex", 1) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Position, e.Key, string(e.Value))
	}
	// Output:
	// 2 k 0
	// 4 k 1
	// 6 k 2
}

// A batch encoded once can be appended many times.
func ExampleNewBatch() {
	cluster := mustStart(1)
	defer cluster.stop()
	ctx := context.Background()

	c, err := client.New(cluster.addrs, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	b, err := client.NewBatch([]client.Entry{{Key: "a", Value: json.RawMessage(`1`)}, {Key: "b", Value: json.RawMessage(`2`)}})
	if err != nil {
		log.Fatal(err)
	}
	for _, tenant := range []string{"acme", "globex"} {
		res, err := c.AppendBatch(ctx, tenant, b)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(tenant, res.FirstPosition, res.LastPosition)
	}
	_, err = client.NewBatch([]client.Entry{{Key: "c", Value: json.RawMessage(`{not json}`)}})
	fmt.Println(err)
	// Output:
	// acme 1 2
	// globex 3 4
	// kmb client: append: malformed: entries[0].value: not one JSON value (null is written null)
}

// Over TLS with a bearer token: the CA that signed the servers'
// certificates, and a client certificate for servers that require one.
func ExampleOptions() {
	pem, err := os.ReadFile("/etc/kmb/ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	c, err := client.New([]string{"kmb-1.internal:7000", "kmb-2.internal:7000", "kmb-3.internal:7000"}, client.Options{
		TLSConfig: &tls.Config{RootCAs: roots}, // or CAFile: "/etc/kmb/ca.pem"
		CertFile:  "/etc/kmb/client.pem",
		KeyFile:   "/etc/kmb/client-key.pem",
		Token:     os.Getenv("KMB_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
