// Package bookstorepbconnect holds the Connect (connectrpc.com/connect) code
// of the bookstore example's services, generated from ../bookstore.proto by
// protoc-gen-connect-go; `go generate ./examples/bookstore/bookstorepb`
// regenerates it.
package bookstorepbconnect
