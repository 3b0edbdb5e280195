package relay

import (
	"context"
	"maps"
	"net"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

var (
	gatewayKinds = map[string]kind{
		"AddItem": kindUnary, "RemoveItem": kindUnary, "GetCart": kindUnary, "Checkout": kindUnary,
		"ListItems": kindStream, // server stream
	}
	testServiceKinds = map[string]kind{
		"EmptyCall": kindUnary, "UnaryCall": kindUnary, "CacheableUnaryCall": kindUnary, "UnimplementedCall": kindUnary,
		"StreamingOutputCall": kindStream, // server stream
		"StreamingInputCall":  kindStream, // client stream
		"FullDuplexCall":      kindStream, // both
		"HalfDuplexCall":      kindStream, // both
	}
)

// TestMethodKinds: the kinds learnt from replies for real descriptors,
// and replies that teach nothing.
func TestMethodKinds(t *testing.T) {
	t.Parallel()
	bookstore := reflectionReply(pb.File_bookstore_proto)
	withFiles := func(files ...[]byte) *rpb.ServerReflectionResponse {
		r := proto.Clone(bookstore).(*rpb.ServerReflectionResponse)
		fr := r.GetFileDescriptorResponse()
		fr.FileDescriptorProto = append(fr.FileDescriptorProto, files...)
		return r
	}
	fileOf := func(fd *descriptorpb.FileDescriptorProto) []byte {
		b, err := proto.Marshal(fd)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withMethods := func(names ...string) []byte {
		sd := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Shelf")}
		for _, n := range names {
			sd.Method = append(sd.Method, &descriptorpb.MethodDescriptorProto{Name: proto.String(n), InputType: proto.String(".x.M"), OutputType: proto.String(".x.M")})
		}
		return fileOf(&descriptorpb.FileDescriptorProto{Name: proto.String("shelf.proto"), Package: proto.String("x"), Service: []*descriptorpb.ServiceDescriptorProto{sd}})
	}
	levels := func() []byte {
		sd := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Shelf")}
		for name, l := range map[string]descriptorpb.MethodOptions_IdempotencyLevel{
			"Get": descriptorpb.MethodOptions_NO_SIDE_EFFECTS, "Put": descriptorpb.MethodOptions_IDEMPOTENT,
			"Add": descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		} {
			sd.Method = append(sd.Method, &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".x.M"), OutputType: proto.String(".x.M"),
				Options: &descriptorpb.MethodOptions{IdempotencyLevel: l.Enum()}})
		}
		sd.Method = append(sd.Method, &descriptorpb.MethodDescriptorProto{Name: proto.String("Watch"), InputType: proto.String(".x.M"), OutputType: proto.String(".x.M"),
			ServerStreaming: proto.Bool(true), Options: &descriptorpb.MethodOptions{IdempotencyLevel: descriptorpb.MethodOptions_NO_SIDE_EFFECTS.Enum()}})
		return fileOf(&descriptorpb.FileDescriptorProto{Name: proto.String("shelf.proto"), Package: proto.String("x"), Service: []*descriptorpb.ServiceDescriptorProto{sd}})
	}
	many := make([]string, maxMethods+1)
	for i := range many {
		many[i] = "M" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name    string
		resp    *rpb.ServerReflectionResponse
		service string
		want    map[string]kind // nil: an error
	}{
		{"bookstore gateway", bookstore, "bookstore.v1.Gateway", gatewayKinds},
		{"bookstore inventory", bookstore, "bookstore.v1.Inventory",
			map[string]kind{"Lookup": kindUnary, "Reserve": kindUnary, "Release": kindUnary, "Held": kindUnary}},
		{"reflection, bidirectional", reflectionReply(rpb.File_grpc_reflection_v1_reflection_proto),
			"grpc.reflection.v1.ServerReflection", map[string]kind{"ServerReflectionInfo": kindStream}},
		{"grpc testing, with imports", reflectionReply(testpb.File_grpc_testing_test_proto), "grpc.testing.TestService", testServiceKinds},
		{"not in the reply", bookstore, "bookstore.v1.Shelf", nil},
		{"a package, not a service", bookstore, "bookstore.v1", nil},
		{"a method, not a service", bookstore, "bookstore.v1.Gateway.AddItem", nil},
		{"error reply", &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_ErrorResponse{
			ErrorResponse: &rpb.ErrorResponse{ErrorCode: 5, ErrorMessage: "symbol not found"},
		}}, "bookstore.v1.Gateway", nil},
		{"no files", &rpb.ServerReflectionResponse{}, "bookstore.v1.Gateway", nil},
		{"a file after the service's does not decode", withFiles([]byte{0x0a, 0x05, 'x'}), "bookstore.v1.Gateway", nil},
		{"the service twice", withFiles(fileOf(protodesc.ToFileDescriptorProto(pb.File_bookstore_proto))), "bookstore.v1.Gateway", nil},
		{"a method name with a slash", withFiles(withMethods("Get", "Get/Put")), "x.Shelf", nil},
		{"an empty method name", withFiles(withMethods("")), "x.Shelf", nil},
		{"a method twice", withFiles(withMethods("Get", "Put", "Get")), "x.Shelf", nil},
		{"too many methods", withFiles(withMethods(many...)), "x.Shelf", nil},
		{"as many methods as allowed", withFiles(withMethods(many[:maxMethods]...)), "x.Shelf", func() map[string]kind {
			m := map[string]kind{}
			for _, n := range many[:maxMethods] {
				m[n] = kindUnary
			}
			return m
		}()},
		{"an invalid package", withFiles(fileOf(&descriptorpb.FileDescriptorProto{Name: proto.String("p.proto"), Package: proto.String("x..y")})),
			"bookstore.v1.Gateway", nil},
		{"a service without methods", withFiles(withMethods()), "x.Shelf", map[string]kind{}},
		{"idempotency levels", withFiles(levels()), "x.Shelf", map[string]kind{
			"Get": kindUnary | kindIdempotent, "Put": kindUnary | kindIdempotent, "Add": kindUnary, "Watch": kindIdempotent,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := methodKinds(tc.resp, tc.service)
			switch {
			case tc.want == nil && err == nil:
				t.Fatalf("learnt %v, want an error", got)
			case tc.want != nil && err != nil:
				t.Fatalf("error %v, want %v", err, tc.want)
			case !maps.Equal(got, tc.want):
				t.Fatalf("learnt %v, want %v", got, tc.want)
			}
		})
	}
}

// TestKindsFromReflectionServer: the relay learns the kinds from gRPC's
// own reflection service, which sends what reflectionReply builds.
func TestKindsFromReflectionServer(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterGatewayServer(srv, pb.UnimplementedGatewayServer{})
	testpb.RegisterTestServiceServer(srv, testpb.UnimplementedTestServiceServer{})
	reflection.Register(srv)
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	k := newKinds(conn)
	for service, want := range map[string]map[string]kind{
		"bookstore.v1.Gateway":     gatewayKinds,
		"grpc.testing.TestService": testServiceKinds,
	} {
		got, err := k.ask(context.Background(), service)
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("%s: learnt %v, %v; want %v", service, got, err, want)
		}
	}
	if got, err := k.ask(context.Background(), "bookstore.v1.Shelf"); err == nil {
		t.Errorf("a service the server does not have: learnt %v", got)
	}
}
