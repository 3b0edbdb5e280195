package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/scone-project/scone/relay"
)

// TestJetStreamReadsFromLeader: the bucket's stream answers no direct gets,
// which a replica behind the leader could answer with a client's older
// SCONEs; reopening the store (another relay starting) keeps it so.
func TestJetStreamReadsFromLeader(t *testing.T) {
	t.Parallel()
	cluster := startNATSCluster(t, 3)
	js := connect(t, cluster...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		jetStreamStore(t, js, 3)
		st, err := js.Stream(ctx, "KV_"+relay.DefaultJetStreamConfig().Bucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.AllowDirect {
			t.Fatal("the bucket's stream allows direct gets: a lagging replica may answer reads")
		}
	}
}
