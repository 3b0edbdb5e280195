package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// JetStreamConfig configures a JetStreamStore.
type JetStreamConfig struct {
	// Bucket is the name of the key-value bucket; relays that share it form
	// one logical holder.
	Bucket string
	// Replicas is how many NATS servers keep each SCONE: 1, 3 or 5. With 3,
	// one NATS server can fail with nothing acknowledged lost.
	Replicas int
	// MaxPerClient bounds each client's SCONEs, by count and bytes.
	MaxPerClient      int
	MaxBytesPerClient int
	// Attempts bounds the compare-and-set retries of one Apply, when relays
	// update one client at the same time.
	Attempts int
	// AttemptTimeout bounds one request to NATS. A request that gets no
	// answer in that time (its server died, or the stream is electing a
	// new leader) is sent again, until the call's own deadline: a call
	// then succeeds as soon as the cluster answers again. 0: the default.
	AttemptTimeout time.Duration
	// CacheSize is how many keys the store remembers as its calls' reads
	// found them, from a call's Get to its Apply, so that the update needs
	// no read of its own: it writes on the remembered revision, and reads
	// again only if another relay wrote since (the compare-and-set fails).
	// It bounds the calls in flight that save that read (a call that
	// writes nothing leaves its entry until it is pushed out). 0 remembers
	// none.
	CacheSize int
	// Now is the clock expiry is read by (nil: time.Now).
	Now func() time.Time
	// MaxClockSkew is how far Now may run ahead of the servers' clocks:
	// the store keeps and returns a SCONE until its expiry plus
	// MaxClockSkew by Now, and the time to live of a write runs that much
	// longer (see Config.MaxClockSkew). 0 tolerates no skew.
	MaxClockSkew time.Duration
}

// DefaultJetStreamConfig returns the defaults of a JetStreamStore.
func DefaultJetStreamConfig() JetStreamConfig {
	return JetStreamConfig{
		Bucket:            "scone",
		Replicas:          1,
		MaxPerClient:      64,
		MaxBytesPerClient: 1 << 20,
		Attempts:          64,
		AttemptTimeout:    500 * time.Millisecond,
		CacheSize:         4096,
		MaxClockSkew:      DefaultMaxClockSkew,
	}
}

// JetStreamStore keeps SCONEs in a NATS JetStream key-value bucket, one key
// per client (a hash of the client's identity) holding all of the client's
// SCONEs. Every relay that shares the bucket sees every client's SCONEs, so
// a relay can die, and another take over, without losing state.
//
//   - Versions: Apply takes the key as its call's Get read it (the store
//     remembers the revision and value a read found, up to CacheSize
//     keys, until the call's Apply), merges the reply (newest version wins, as
//     in a scone.Dict) and writes it back only if the key's revision has not
//     moved meanwhile (compare-and-set), reading again and retrying on a
//     conflict. Get always reads from NATS: only NATS knows whether another
//     relay wrote.
//   - Expiry: each write carries a time to live, the latest expiry of the
//     SCONEs it holds plus MaxClockSkew, so JetStream deletes the key when
//     its last SCONE has expired; reads skip SCONEs already expired. Expiry
//     is read by Now less MaxClockSkew, so a relay whose clock runs ahead
//     (by less than that) neither skips nor purges live SCONEs.
//   - Durability: a write is acknowledged by the NATS server(s) (a majority
//     of the replicas) before the relay forwards the reply. JetStream's
//     default is to sync to disk every 2 minutes, so a power loss can lose
//     acknowledged writes: run the NATS servers with `sync_interval: always`
//     (or replicas 3 or 5 on separate machines) where that matters. See
//     docs/modes.md for what each setting survives.
//   - Failover: each request waits at most AttemptTimeout and is sent again
//     until the call's deadline; connect with NATSOptions.
type JetStreamStore struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg JetStreamConfig
	pre string           // the subject prefix of the bucket's keys
	now func() time.Time // the clock of expiry: cfg.Now less cfg.MaxClockSkew
	// expired counts the expired SCONEs reads skipped (NATS deletes them
	// with their key's TTL).
	expired atomic.Uint64

	mu   sync.Mutex
	last map[string]seen // by key: what a call's read found, until its Apply
}

// NewJetStreamStore opens (creating it if needed) the bucket of cfg.
func NewJetStreamStore(ctx context.Context, js jetstream.JetStream, cfg JetStreamConfig) (*JetStreamStore, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultJetStreamConfig().AttemptTimeout
	}
	if cfg.MaxClockSkew < 0 {
		return nil, errors.New("relay: the JetStream store's max clock skew is negative")
	}
	switch cfg.Replicas {
	case 1, 3, 5:
	default:
		return nil, errors.New("relay: JetStream replicas must be 1, 3 or 5, not " + strconv.Itoa(cfg.Replicas))
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         cfg.Bucket,
		Description:    "SCONEs held by scone relays, one key per client",
		History:        1,
		Replicas:       cfg.Replicas,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: time.Minute, // allows a TTL per key
	})
	if err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "opening the JetStream bucket "+cfg.Bucket, err)
	}
	if kv, err = leaderReads(ctx, js, kv); err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "opening the JetStream bucket "+cfg.Bucket, err)
	}
	return &JetStreamStore{js: js, kv: kv, cfg: cfg, pre: "$KV." + cfg.Bucket + ".",
		now: expiryClock(cfg.Now, cfg.MaxClockSkew), last: make(map[string]seen)}, nil
}

// leaderReads turns off direct gets on the bucket's stream, if it has more
// than one replica, and reopens it. Key-value buckets are made with direct
// gets, which any replica may answer, including one that has not applied
// the latest write yet: a relay would then attach a client's older SCONEs
// and serve a stale read (scone chaos --mode=relay found it). Without them
// every read goes to the stream's leader, which holds every acknowledged
// write. A stream of one replica keeps them: its one server is its leader,
// and a direct get costs it far less than a get through the JetStream API
// (no JSON, no base64). (A mirror with MirrorDirect would answer direct gets
// too: do not mirror the bucket's stream so.)
func leaderReads(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	st, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, err
	}
	if sc := st.CachedInfo().Config; sc.AllowDirect && sc.Replicas > 1 {
		sc.AllowDirect = false
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			return nil, err
		}
	}
	return js.KeyValue(ctx, kv.Bucket())
}

// NATSOptions returns the connection options a JetStream store's NATS
// connection should have, for a quick failover: reconnect forever, at once
// (to another server of the URLs given, or one the cluster advertised),
// and take a server that answers no ping for 2 s as gone. Requests made
// while reconnecting are buffered and sent on the new connection.
func NATSOptions() []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(50*time.Millisecond, 50*time.Millisecond),
		nats.Timeout(time.Second),
		nats.PingInterval(time.Second),
		nats.MaxPingsOutstanding(2),
	}
}

// key is the bucket key of a client: a hash, so any identity makes a valid
// key and the bucket shows no identities.
func key(client string) string {
	sum := sha256.Sum256([]byte(client))
	return "c." + hex.EncodeToString(sum[:20])
}

// Get implements Store.
func (s *JetStreamStore) Get(ctx context.Context, client, target string) ([][]byte, error) {
	k := key(client)
	rev, value, err := s.read(ctx, k)
	if err != nil {
		return nil, err
	}
	s.remember(k, rev, value)
	toks, err := decodeTokens(value)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := toks[:0]
	for _, tok := range toks {
		h, err := hook.Peek(tok)
		if err == nil && !now.Before(h.Expires) {
			s.expired.Add(1)
			continue
		}
		if err == nil && scone.ScopeMatches(string(h.Scope), target) {
			out = append(out, tok)
		}
	}
	return out, nil
}

// read returns the key's revision and value (0 and nil when there is none),
// from the stream's leader. Each attempt waits at most AttemptTimeout, so a
// read sent to a leader that has just died is sent again, to the next one,
// within the caller's deadline.
func (s *JetStreamStore) read(ctx context.Context, k string) (rev uint64, value []byte, err error) {
	err = s.retry(ctx, "reading the JetStream store", func(ctx context.Context) error {
		e, err := s.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, value = 0, nil
			return nil
		case err != nil:
			return err
		}
		rev, value = e.Revision(), e.Value()
		return nil
	})
	return rev, value, err
}

// retry runs op until it succeeds, each attempt bounded by AttemptTimeout,
// until ctx ends. The last error is wrapped as scone.CodeUnavailable.
func (s *JetStreamStore) retry(ctx context.Context, what string, op func(context.Context) error) error {
	for wait := time.Duration(0); ; wait = min(2*wait+10*time.Millisecond, 200*time.Millisecond) {
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return scone.WrapError(scone.CodeUnavailable, what, ctx.Err())
			}
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
		err := op(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			if err != nil {
				return scone.WrapError(scone.CodeUnavailable, what, err)
			}
			return nil
		}
	}
}

// retryable reports whether an attempt failed for want of an answer (no
// leader yet, a server gone, a timeout) rather than with one.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 // JetStream or the stream's leader not available yet
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// remember notes the revision and value a call's read found for k: the
// call's Apply starts from them instead of reading the key again, and its
// compare-and-set fails (and reads again) if another relay wrote since.
func (s *JetStreamStore) remember(k string, rev uint64, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.last[k]; !ok && len(s.last) >= s.cfg.CacheSize {
		for old := range s.last { // drop one at random
			delete(s.last, old)
			break
		}
	}
	if s.cfg.CacheSize > 0 {
		s.last[k] = seen{rev, value}
	}
}

// recall returns what remember noted for k, and forgets it: an Apply that
// fails must not start from it again.
func (s *JetStreamStore) recall(k string) (seen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.last[k]
	delete(s.last, k)
	return v, ok
}

// seen is a key's revision and value as a read found it.
type seen struct {
	rev   uint64
	value []byte
}

// Expired returns how many expired SCONEs reads have skipped.
func (s *JetStreamStore) Expired() uint64 { return s.expired.Load() }

// Apply implements Store.
func (s *JetStreamStore) Apply(ctx context.Context, client string, r *hook.Reply, sent [][]byte) error {
	k := key(client)
	last, known := s.recall(k)
	for attempt := range s.cfg.Attempts {
		if attempt > 0 {
			// Lost a race to another relay: back off a little, at random.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(attempt)*int64(time.Millisecond) + 1))):
			case <-ctx.Done():
				return scone.WrapError(scone.CodeUnavailable, "updating the JetStream store", ctx.Err())
			}
		}
		if !known {
			rev, value, err := s.read(ctx, k)
			if err != nil {
				return err
			}
			last = seen{rev, value}
		}
		known = false
		d := scone.NewDict(scone.WithDictLimits(s.cfg.MaxPerClient, s.cfg.MaxBytesPerClient), scone.WithDictClock(s.now))
		toks, err := decodeTokens(last.value)
		if err != nil {
			return err
		}
		for _, tok := range toks {
			if _, err := d.Put(tok); err != nil { // an expired one is simply not kept
				return err
			}
		}
		if err := hook.ApplyIfBase(d, r, sent); err != nil {
			return err
		}
		value := encodeTokens(d.Tokens())
		done, err := s.write(ctx, k, last.rev, value)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		// Lost the race, or won it with an attempt whose answer was lost:
		// then the key holds exactly this value (or, for an empty one, is
		// gone).
		rev, now, err := s.read(ctx, k)
		if err != nil {
			return err
		}
		if bytes.Equal(now, value) && (rev != 0) == (len(value) != 0) {
			return nil
		}
		last, known = seen{rev, now}, true
	}
	return scone.NewError(scone.CodeUnavailable, "the JetStream store kept changing under this update; giving up")
}

// write stores value under k if the key is still at revision rev (an empty
// value purges the key). done is false when another writer came first.
//
// An attempt that gets no answer in AttemptTimeout is sent again, with the
// same expected revision: if the first did land, the second fails the
// compare-and-set, and the key then holds exactly value, which Apply
// recognizes as its own.
func (s *JetStreamStore) write(ctx context.Context, k string, rev uint64, value []byte) (done bool, err error) {
	if len(value) == 0 {
		if rev == 0 {
			return true, nil
		}
		// A purge marker that JetStream removes after a minute, so former
		// clients leave nothing behind.
		err = s.retry(ctx, "writing the JetStream store", func(ctx context.Context) error {
			return s.kv.Purge(ctx, k, jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute))
		})
		return s.outcome(err)
	}
	ttl := s.ttl(value)
	err = s.retry(ctx, "writing the JetStream store", func(ctx context.Context) error {
		if rev == 0 {
			_, err := s.kv.Create(ctx, k, value, jetstream.KeyTTL(ttl))
			return err
		}
		// Concurrent calls' writes are pipelined on the one connection:
		// each waits for its own acknowledgement only.
		_, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: s.pre + k, Data: value},
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		return err
	})
	return s.outcome(err)
}

// ttl is the time to live of a key holding value: its latest expiry, by
// the expiry clock, so the key outlives its last SCONE by MaxClockSkew, as
// the relays' reads do.
func (s *JetStreamStore) ttl(value []byte) time.Duration {
	toks, _ := decodeTokens(value)
	var latest time.Time
	for _, tok := range toks {
		if h, err := hook.Peek(tok); err == nil && h.Expires.After(latest) {
			latest = h.Expires
		}
	}
	return max(time.Second, latest.Sub(s.now()).Round(time.Second)+time.Second)
}

// outcome sorts a write's error: nil (done), a lost race (retry), or a
// failure of the store.
func (s *JetStreamStore) outcome(err error) (bool, error) {
	if err == nil {
		return true, nil
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return false, nil
	}
	return false, err
}

// Close implements Store; the caller owns the NATS connection.
func (s *JetStreamStore) Close() error { return nil }

// encodeTokens lays tokens out as uvarint length, bytes, one after another.
func encodeTokens(toks [][]byte) []byte {
	n := 0
	for _, t := range toks {
		n += binary.MaxVarintLen32 + len(t)
	}
	b := make([]byte, 0, n)
	for _, t := range toks {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return b
}

func decodeTokens(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > scone.MaxEnvelopeSize {
			return nil, scone.NewError(scone.CodeMalformed, "a value in the JetStream store is not a list of SCONEs")
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}
