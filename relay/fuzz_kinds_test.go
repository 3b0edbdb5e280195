package relay

import (
	"testing"

	testpb "google.golang.org/grpc/interop/grpc_testing"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// reflectionReply is what a gRPC reflection service sends for a symbol
// of fd: fd first, then every file it imports, directly or not, each
// once, as serialized FileDescriptorProtos.
func reflectionReply(fd protoreflect.FileDescriptor) *rpb.ServerReflectionResponse {
	var files [][]byte
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		b, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err != nil {
			panic(err)
		}
		files = append(files, b)
		imps := fd.Imports()
		for i := range imps.Len() {
			add(imps.Get(i).FileDescriptor)
		}
	}
	add(fd)
	return &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_FileDescriptorResponse{
		FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: files},
	}}
}

// realServices are services of real generated code, with the file that
// defines each: every kind of method among them (unary, server, client
// and bidirectional streams), and files with and without imports.
var realServices = []struct {
	file    protoreflect.FileDescriptor
	service string
}{
	{pb.File_bookstore_proto, "bookstore.v1.Gateway"},
	{pb.File_bookstore_proto, "bookstore.v1.Cart"},
	{pb.File_bookstore_proto, "bookstore.v1.Inventory"},
	{rpb.File_grpc_reflection_v1_reflection_proto, "grpc.reflection.v1.ServerReflection"},
	{testpb.File_grpc_testing_test_proto, "grpc.testing.TestService"},
	{testpb.File_grpc_testing_test_proto, "grpc.testing.UnimplementedService"},
}

// serviceReply is a reflection reply of one file: fd cut down to the
// service named, which is all the relay reads of it.
func serviceReply(fd protoreflect.FileDescriptor, service string) *rpb.ServerReflectionResponse {
	full := protodesc.ToFileDescriptorProto(fd)
	cut := &descriptorpb.FileDescriptorProto{Name: full.Name, Package: full.Package, Syntax: full.Syntax}
	for _, sd := range full.GetService() {
		if string(protoreflect.FullName(full.GetPackage()).Append(protoreflect.Name(sd.GetName()))) == service {
			cut.Service = append(cut.Service, sd)
		}
	}
	b, err := proto.Marshal(cut)
	if err != nil {
		panic(err)
	}
	return &rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_FileDescriptorResponse{
		FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: [][]byte{b}},
	}}
}

// FuzzMethodKinds: a reflection reply (the bytes an upstream sends for
// a service) either fails to teach the relay anything, or teaches it no
// more methods than the reply could hold, each with a proto identifier
// for a name; a reply with a file that does not decode always fails; and
// whenever the files form a valid set of descriptors (protodesc accepts
// them, imports left out or not), the kinds are exactly those of the
// service's methods there.
//
// The seeds are real files cut down to one service, without their
// messages and imports: the fuzzer minimizes every new input it finds in
// time quadratic in its size, and a reply of whole files (2 to 8 KB) would
// take it a minute each. TestMethodKinds covers whole replies.
func FuzzMethodKinds(f *testing.F) {
	for _, s := range realServices {
		b, err := proto.Marshal(serviceReply(s.file, s.service))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, s.service)
	}
	b, _ := proto.Marshal(serviceReply(pb.File_bookstore_proto, "bookstore.v1.Gateway"))
	f.Add(b, "bookstore.v1.Shelf")
	f.Add(b[:len(b)/2], "bookstore.v1.Gateway")
	b, _ = proto.Marshal(&rpb.ServerReflectionResponse{MessageResponse: &rpb.ServerReflectionResponse_ErrorResponse{
		ErrorResponse: &rpb.ErrorResponse{ErrorCode: 5, ErrorMessage: "symbol not found"},
	}})
	f.Add(b, "bookstore.v1.Gateway")
	f.Add([]byte{}, "")
	f.Fuzz(func(t *testing.T, b []byte, service string) {
		var resp rpb.ServerReflectionResponse
		if proto.Unmarshal(b, &resp) != nil {
			return // gRPC's codec refuses it before the relay sees it
		}
		got, err := methodKinds(&resp, service)
		files := resp.GetFileDescriptorResponse().GetFileDescriptorProto()
		var fds []*descriptorpb.FileDescriptorProto
		for _, raw := range files {
			fd := &descriptorpb.FileDescriptorProto{}
			if proto.Unmarshal(raw, fd) != nil {
				if err == nil {
					t.Fatalf("a file of the reply does not decode, yet it taught %d methods", len(got))
				}
				return
			}
			fds = append(fds, fd)
		}
		if err == nil {
			if got == nil {
				t.Fatal("no error and no methods")
			}
			if len(got) > len(b)/4 || len(got) > maxMethods {
				t.Fatalf("%d methods learnt from %d bytes", len(got), len(b))
			}
			for m := range got {
				if !protoreflect.Name(m).IsValid() {
					t.Fatalf("learnt a method named %q", m)
				}
			}
		}
		reg, verr := protodesc.FileOptions{AllowUnresolvable: true}.NewFiles(&descriptorpb.FileDescriptorSet{File: fds})
		if verr != nil || resp.GetErrorResponse() != nil {
			return
		}
		d, ferr := reg.FindDescriptorByName(protoreflect.FullName(service))
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if ferr != nil || !ok {
			if err == nil {
				t.Fatalf("%q is no service of the reply's files, yet it taught %v", service, got)
			}
			return
		}
		if sd.Methods().Len() > maxMethods {
			return
		}
		if err != nil {
			t.Fatalf("a valid reply for %s: %v", service, err)
		}
		if len(got) != sd.Methods().Len() {
			t.Fatalf("learnt %d methods of %s, which has %d", len(got), service, sd.Methods().Len())
		}
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			want := kindStream
			if !md.IsStreamingClient() && !md.IsStreamingServer() {
				want |= kindUnary
			}
			switch md.Options().(*descriptorpb.MethodOptions).GetIdempotencyLevel() {
			case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
				want |= kindIdempotent
			}
			if k, ok := got[string(md.Name())]; !ok || k != want {
				t.Fatalf("%s: learnt %v (%v), want %v", md.FullName(), k, ok, want)
			}
		}
	})
}
