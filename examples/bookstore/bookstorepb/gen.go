// Package bookstorepb holds the protobuf and gRPC code of the bookstore
// example, generated from bookstore.proto; its Connect code is in
// bookstorepbconnect.
package bookstorepb

// Regenerate with protoc 3.21+, protoc-gen-go v1.36.12,
// protoc-gen-go-grpc v1.5.1 and protoc-gen-connect-go v1.21.1 on the PATH
// (go install connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1):
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bookstore.proto
//go:generate protoc --connect-go_out=. --connect-go_opt=paths=source_relative bookstore.proto
