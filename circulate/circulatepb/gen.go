// Package circulatepb holds the protobuf and gRPC code of the protocol
// between circulating relays, generated from circulate.proto.
package circulatepb

// Regenerate with protoc 3.21+, protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc v1.5.1 on the PATH:
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative circulate.proto
