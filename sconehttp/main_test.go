package sconehttp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them.
//
// After answering a request it refuses before any handler runs (431 for
// oversized headers, in TestBadInput), net/http keeps the connection's
// goroutine for up to 500 ms (closeWriteAndWait, which avoids a TCP reset
// losing the answer); it ends by itself, but may outlast goleak's retries.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}
