// Package benchpb is the protocol of sconelab bench's workload: one unary
// method, Sessions.Step. The gRPC service description is written by hand
// in service.go (one method does not need protoc-gen-go-grpc).
package benchpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative bench.proto
