// Command bookstore runs one process of the bookstore example by hand: a
// server of one tier (gateway, cart or inventory), a shopper that keeps its
// SCONEs in a file between runs, or ("bookstore node") one node of a
// bookstore cluster that keeps the clients' SCONEs on k of its nodes. See
// README.md beside it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/marks"
	"github.com/scone-project/scone/sconegrpc"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "node" {
		os.Exit(cli.Run("bookstore", []cli.Command{{Name: "node", Run: runNode}}, os.Args[1:], os.Stdout, os.Stderr))
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bookstore:", err)
		os.Exit(1)
	}
}

// The options that trace the servers' calls and their calls to back ends,
// when the OTEL_* environment turns tracing on (cli.Tracing).
var (
	traceServer []grpc.ServerOption
	traceDial   []grpc.DialOption
)

func run(args []string) error {
	fs := flag.NewFlagSet("bookstore", flag.ContinueOnError)
	role := fs.String("role", "", "gateway, cart, inventory (servers), or shopper (a client); with -http and no role, the whole shop in one process")
	listen := fs.String("listen", "127.0.0.1:0", "servers: address to serve gRPC on")
	httpAddr := fs.String("http", "", "the gateway (or the whole shop): also serve the HTTP/JSON front and its page on this address")
	keys := fs.String("keys", "", "servers: key file (make one with: go run ./cmd/scone keygen --out keys.json); the whole shop (-http alone) creates "+defaultKeys+" when this is not set")
	cart := fs.String("cart", "", "gateway: cart replica addresses, comma-separated")
	inventory := fs.String("inventory", "", "gateway, cart: inventory replica addresses, comma-separated")
	gateway := fs.String("gateway", "", "shopper: gateway replica addresses, comma-separated")
	jar := fs.String("jar", "shopper.scones", "shopper: file that keeps the shopper's SCONEs between runs")
	natsURL := fs.String("nats", "", "servers: NATS URL of the JetStream mark store the replicas share, so each SCONE version is spent once across them; without it each process keeps its marks in memory")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bookstore -http=ADDR -keys=FILE            (the whole shop, HTTP front on ADDR)")
		fmt.Fprintln(fs.Output(), "       bookstore -role=gateway|cart|inventory [-nats=URL] [flags]")
		fmt.Fprintln(fs.Output(), "       bookstore -role=shopper -gateway=ADDRS [-jar=FILE] add ISBN N | remove ISBN N | cart | list | checkout | books")
		fmt.Fprintln(fs.Output(), "       bookstore node --keys=FILE [--join=ADDRS] [flags]  (a node of a cluster; node --help for its flags)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if shop.Role(*role) != "shopper" {
		tp, stop, err := cli.Tracing(context.Background(), "bookstore")
		if err != nil {
			return err
		}
		defer stop(context.Background())
		traceServer, traceDial = shop.Tracing(tp)
	}
	switch shop.Role(*role) {
	case "":
		if *httpAddr != "" {
			return allInOne(*httpAddr, *keys, *natsURL)
		}
	case shop.RoleGateway, shop.RoleCart, shop.RoleInventory:
		return serve(shop.Role(*role), *listen, *httpAddr, *keys, *natsURL, split(*cart), split(*inventory))
	case "shopper":
		return shopper(split(*gateway), *jar, fs.Args())
	}
	fs.Usage()
	return fmt.Errorf("-role=%q: want gateway, cart, inventory or shopper", *role)
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// newSealer returns the sealer of a server, with each SCONE version spent
// once (scone.WithMarkStore): a shopper cannot undo a checkout by replaying
// an old SCONE file or cookie jar. The marks are in the JetStream bucket at
// natsURL, shared by every replica, or in this process's memory.
func newSealer(keys, natsURL string) (*scone.Sealer, func(), error) {
	if keys == "" {
		return nil, nil, errors.New("-keys is required: every replica of every tier needs the same key file (go run ./cmd/scone keygen --out keys.json)")
	}
	ring, err := scone.ReadKeyFile(keys)
	if err != nil {
		return nil, nil, err
	}
	store, closeStore := scone.NewMemoryMarkStore(1<<20, nil), func() {}
	if natsURL != "" {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return nil, nil, fmt.Errorf("-nats: %w", err)
		}
		js, err := jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			store, err = marks.NewJetStream(ctx, js, marks.DefaultConfig())
			cancel()
		}
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("-nats: %w", err)
		}
		closeStore = nc.Close
	}
	s, err := scone.NewSealer(ring, scone.WithMarkStore(store))
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	return s, closeStore, nil
}

// defaultKeys is the key file the whole shop uses when -keys is not set.
const defaultKeys = "bookstore-keys.json"

// allInOne runs one replica of every tier on loopback, and the HTTP front.
// Without -keys it uses defaultKeys, creating it on the first run, so a
// restart keeps the sessions.
func allInOne(httpAddr, keys, natsURL string) error {
	if keys == "" {
		keys = defaultKeys
		if _, err := os.Stat(keys); errors.Is(err, os.ErrNotExist) {
			ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
			if err != nil {
				return err
			}
			if err := scone.WriteKeyFile(keys, ring); err != nil {
				return err
			}
			fmt.Printf("created the key file %s (keep it: restarts with it keep the sessions)\n", keys)
		}
	}
	sealer, closeStore, err := newSealer(keys, natsURL)
	if err != nil {
		return err
	}
	defer closeStore()
	d, err := shop.Deploy(sealer, 1, shop.WithServerOptions(traceServer...), shop.WithDialOptions(traceDial...))
	if err != nil {
		return err
	}
	defer d.Close()
	b := d.Backends()
	return serveHTTP(httpAddr, shop.HTTPHandler(&shop.Gateway{Cart: b.Cart, Inventory: b.Inventory}, sealer))
}

// serveHTTP serves h on addr until SIGINT or SIGTERM.
func serveHTTP(addr string, h http.Handler) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("HTTP front on http://%s%s\n", lis.Addr(), shop.HTTPScope)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func serve(role shop.Role, listen, httpAddr, keys, natsURL string, cartAddrs, invAddrs []string) error {
	sealer, closeStore, err := newSealer(keys, natsURL)
	if err != nil {
		return err
	}
	defer closeStore()
	var b shop.Backends
	if len(invAddrs) > 0 {
		conn, err := shop.DialBackend(invAddrs, traceDial...)
		if err != nil {
			return err
		}
		defer conn.Close()
		b.Inventory = pb.NewInventoryClient(conn)
	}
	if len(cartAddrs) > 0 {
		conn, err := shop.DialBackend(cartAddrs, traceDial...)
		if err != nil {
			return err
		}
		defer conn.Close()
		b.Cart = pb.NewCartClient(conn)
	}
	srv, err := shop.NewServer(role, sealer, b, traceServer...)
	if err != nil {
		return err
	}
	if httpAddr != "" {
		if role != shop.RoleGateway {
			return errors.New("-http: only the gateway has an HTTP front")
		}
		go func() {
			if err := serveHTTP(httpAddr, shop.HTTPHandler(&shop.Gateway{Cart: b.Cart, Inventory: b.Inventory}, sealer)); err != nil {
				fmt.Fprintln(os.Stderr, "bookstore: HTTP front:", err)
				os.Exit(1)
			}
		}()
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("%s serving on %s\n", role, lis.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	return srv.Serve(lis)
}

// shopper runs one shopper command, with its SCONEs loaded from and saved
// to the jar file: the client is the holder, even across restarts.
func shopper(addrs []string, jar string, args []string) error {
	if len(args) == 0 {
		return errors.New("shopper: want a command: add ISBN N, remove ISBN N, cart, list, checkout, books")
	}
	if args[0] == "books" {
		for _, b := range shop.Catalog {
			fmt.Printf("%s  %-50s %6.2f\n", b.Isbn, b.Title, float64(b.PriceCents)/100)
		}
		return nil
	}
	if len(addrs) == 0 {
		return errors.New("-gateway is required")
	}
	dict := scone.NewDict()
	if err := loadJar(dict, jar); err != nil {
		return err
	}
	conn, err := shop.DialReplicas(addrs, sconegrpc.DialOptions(sconegrpc.WithHolder(dict))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shopperCommand(ctx, gw, args); err != nil {
		return err
	}
	return saveJar(dict, jar)
}

func shopperCommand(ctx context.Context, gw pb.GatewayClient, args []string) error {
	change := func() (string, int32, error) {
		if len(args) != 3 {
			return "", 0, fmt.Errorf("%s: want ISBN and a quantity", args[0])
		}
		n, err := strconv.Atoi(args[2])
		return args[1], int32(n), err
	}
	var v *pb.CartView
	var err error
	switch args[0] {
	case "add":
		isbn, n, cerr := change()
		if cerr != nil {
			return cerr
		}
		v, err = gw.AddItem(ctx, &pb.AddItemRequest{Isbn: isbn, Quantity: n})
	case "remove":
		isbn, n, cerr := change()
		if cerr != nil {
			return cerr
		}
		v, err = gw.RemoveItem(ctx, &pb.RemoveItemRequest{Isbn: isbn, Quantity: n})
	case "cart":
		v, err = gw.GetCart(ctx, &pb.GetCartRequest{})
	case "list":
		return list(ctx, gw)
	case "checkout":
		o, err := gw.Checkout(ctx, &pb.CheckoutRequest{})
		if err != nil {
			return err
		}
		fmt.Printf("order: %d lines, %.2f total (change #%d of this session)\n", len(o.Lines), float64(o.TotalCents)/100, o.Operations)
		return nil
	default:
		return fmt.Errorf("unknown shopper command %q", args[0])
	}
	if err != nil {
		return err
	}
	for _, l := range v.Lines {
		fmt.Printf("%3d × %s\n", l.Quantity, l.Book.Title)
	}
	fmt.Printf("total %.2f; %d copies reserved; %d changes this session\n", float64(v.TotalCents)/100, v.Reserved, v.Operations)
	return nil
}

func list(ctx context.Context, gw pb.GatewayClient) error {
	stream, err := gw.ListItems(ctx, &pb.GetCartRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		l, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Printf("%3d × %s\n", l.Quantity, l.Book.Title)
	}
}

// The jar holds one SCONE per line, in text form.
func loadJar(d *scone.Dict, path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 2*scone.MaxEnvelopeSize) // a text form is 4/3 of its envelope
	for sc.Scan() {
		tok, err := scone.DecodeText(sc.Text())
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if _, err := d.Put(tok); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return sc.Err()
}

func saveJar(d *scone.Dict, path string) error {
	var b []byte
	for _, tok := range d.Tokens() {
		b = append(append(b, scone.EncodeText(tok)...), '\n')
	}
	return os.WriteFile(path, b, 0o600)
}
