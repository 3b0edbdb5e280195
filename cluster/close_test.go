package cluster

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestClosedNodeOpensNoLinks: a call that reaches a node after Close (its
// gRPC server still serving, as when a program closes the node first)
// fails with Unavailable, and opens no link to the other members: nothing
// would close it, and its goroutines would outlive the node (TestMain's
// goleak check).
func TestClosedNodeOpensNoLinks(t *testing.T) {
	c := newTCPCluster(t, 2, 2)
	a, b := c.nodes[0], c.nodes[1]
	a.node.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
	err := a.conn.Invoke(ctx, "/sconetest.Counter/Add", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call served after Close: %v, want Unavailable", err)
	}
	if l, err := a.node.link(b.name); err == nil || l != nil {
		t.Fatalf("a closed node opened a link to %s", b.name)
	}
}
