package marks_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/marks"
)

// Two replicas of a service share a JetStream mark store, so a SCONE
// version is spent once across both: a holder that presents an older
// SCONE again, to either replica, is refused as rolled_back, and its
// session is unchanged.
func Example() {
	// A NATS server with JetStream; in production, your NATS cluster.
	dir, err := os.MkdirTemp("", "marks-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("NATS did not start")
	}
	defer ns.WaitForShutdown()
	defer ns.Shutdown()

	ctx := context.Background()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	replica := func() *scone.Sealer { // each replica: its own connection, the same bucket
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			log.Fatal(err)
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			log.Fatal(err)
		}
		store, err := marks.NewJetStream(ctx, js, marks.DefaultConfig())
		if err != nil {
			log.Fatal(err)
		}
		s, err := scone.NewSealer(ring, scone.WithMarkStore(store))
		if err != nil {
			log.Fatal(err)
		}
		return s
	}
	a, b := replica(), replica()
	want := scone.Expect{Service: "wallet"}
	spend := func(s *scone.Sealer, tok []byte, balance string) ([]byte, error) {
		st, err := s.Restore(ctx, tok, want, "/")
		if err != nil {
			return nil, err
		}
		st.SetData([]byte(balance))
		_, next, err := s.Commit(nil, st)
		return next, err
	}

	v1, err := spend(a, nil, "100")
	if err != nil {
		log.Fatal(err)
	}
	v2, err := spend(b, v1, "70") // a purchase, on the other replica
	if err != nil {
		log.Fatal(err)
	}
	_, err = spend(a, v1, "70") // the same purchase again, from the old SCONE
	fmt.Println("replaying v1 on replica A:", scone.CodeOf(err))
	_, err = spend(b, v1, "100") // undoing the purchase
	fmt.Println("replaying v1 on replica B:", scone.CodeOf(err))
	st, err := a.Restore(ctx, v2, want, "/")
	fmt.Printf("the newest SCONE: %s, %v\n", st.Data(), err)
	// Output:
	// replaying v1 on replica A: rolled_back
	// replaying v1 on replica B: rolled_back
	// the newest SCONE: 70, <nil>
}
