package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec of reflection calls
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// A relay carries SCONEs to and from unary methods in the message body
// (sconegrpc's body carrier, much cheaper than metadata for state that
// changes on every call) and to and from streaming methods in metadata. On
// the wire a unary call and a stream look alike, so the relay asks the
// upstreams' gRPC reflection service, once per service, which methods are
// unary. A method it cannot learn about uses metadata, which works for all.
// The same reply says which methods the proto declares free of side effects
// or idempotent (MethodOptions.idempotency_level): the relay re-sends those
// to another upstream when one fails before answering (see Config.RetryMethods).

// kind is what the relay knows of a method: a set of flags.
type kind uint8

const (
	kindStream     kind = 0      // streaming, or not known: metadata
	kindUnary      kind = 1 << 0 // unary: the body
	kindIdempotent kind = 1 << 1 // declared NO_SIDE_EFFECTS or IDEMPOTENT: retried
)

// unary reports whether the method is known to be unary.
func (k kind) unary() bool { return k&kindUnary != 0 }

// idempotent reports whether the proto declares the method idempotent or
// free of side effects.
func (k kind) idempotent() bool { return k&kindIdempotent != 0 }

// kinds caches the kind of each method, learnt by reflection.
type kinds struct {
	conn *grpc.ClientConn

	mu      sync.Mutex
	methods map[string]kind     // "/pkg.Service/Method" → kind
	asked   map[string]struct{} // services asked about, or being asked
}

func newKinds(conn *grpc.ClientConn) *kinds {
	return &kinds{conn: conn, methods: map[string]kind{}, asked: map[string]struct{}{}}
}

var protoCodec = grpc.ForceCodecV2(encoding.GetCodecV2("proto"))

// maxAsked bounds the services asked about (and in flight), so clients
// calling made-up services cannot make the relay ask without end.
const maxAsked = 1024

// of returns the kind of method. The first call for a service starts a
// reflection request in the background and reports kindStream meanwhile.
func (k *kinds) of(method string) kind {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kd, ok := k.methods[method]; ok {
		return kd
	}
	service, _, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return kindStream
	}
	if _, ok := k.asked[service]; !ok && len(k.asked) < maxAsked {
		k.asked[service] = struct{}{}
		go k.learn(service)
	}
	return kindStream
}

// learn asks an upstream for the file that defines service and records
// the kind of each of its methods. A failure leaves the service on
// metadata, and it is asked about again a minute later.
func (k *kinds) learn(service string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	found, err := k.ask(ctx, service)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		time.AfterFunc(time.Minute, func() {
			k.mu.Lock()
			delete(k.asked, service)
			k.mu.Unlock()
		})
		return
	}
	for m, kd := range found {
		k.methods["/"+service+"/"+m] = kd
	}
}

func (k *kinds) ask(ctx context.Context, service string) (map[string]kind, error) {
	stream, err := rpb.NewServerReflectionClient(k.conn).ServerReflectionInfo(ctx, protoCodec)
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	err = stream.Send(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: service},
	})
	if err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return methodKinds(resp, service)
}

// maxMethods bounds the methods learnt of one service, so an upstream
// cannot make the relay keep a reply's worth of method names per service.
// A service with more is not learnt: its methods use metadata.
const maxMethods = 4096

// methodKinds reads the kind of each method of service (a full name,
// "pkg.Service") from an upstream's reflection reply: the files it sent,
// serialized FileDescriptorProtos. It reads all of them, and fails unless
// every one decodes, exactly one service in them is service, and that
// service's method names are proto identifiers, each once: a reply the
// relay cannot trust in full teaches it nothing.
func methodKinds(resp *rpb.ServerReflectionResponse, service string) (map[string]kind, error) {
	if e := resp.GetErrorResponse(); e != nil {
		return nil, fmt.Errorf("reflection error %d: %s", e.GetErrorCode(), e.GetErrorMessage())
	}
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
	if len(files) == 0 {
		return nil, errors.New("reflection reply without files")
	}
	var found *descriptorpb.ServiceDescriptorProto
	for _, raw := range files {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fd); err != nil {
			return nil, fmt.Errorf("reflection reply: a file does not decode: %w", err)
		}
		pkg := fd.GetPackage()
		if pkg != "" && !protoreflect.FullName(pkg).IsValid() {
			return nil, fmt.Errorf("reflection reply: package %q", pkg)
		}
		for _, sd := range fd.GetService() {
			if !protoreflect.Name(sd.GetName()).IsValid() {
				return nil, fmt.Errorf("reflection reply: service name %q", sd.GetName())
			}
			if string(protoreflect.FullName(pkg).Append(protoreflect.Name(sd.GetName()))) != service {
				continue
			}
			if found != nil {
				return nil, fmt.Errorf("reflection reply: %s defined twice", service)
			}
			found = sd
		}
	}
	if found == nil {
		return nil, fmt.Errorf("reflection reply: no file defines %s", service)
	}
	if len(found.GetMethod()) > maxMethods {
		return nil, fmt.Errorf("reflection reply: %s has %d methods, over %d", service, len(found.GetMethod()), maxMethods)
	}
	out := make(map[string]kind, len(found.GetMethod()))
	for _, md := range found.GetMethod() {
		name := md.GetName()
		if !protoreflect.Name(name).IsValid() {
			return nil, fmt.Errorf("reflection reply: method name %q in %s", name, service)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("reflection reply: method %s of %s defined twice", name, service)
		}
		var kd kind
		if !md.GetClientStreaming() && !md.GetServerStreaming() {
			kd |= kindUnary
		}
		switch md.GetOptions().GetIdempotencyLevel() {
		case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
			kd |= kindIdempotent
		}
		out[name] = kd
	}
	return out, nil
}
