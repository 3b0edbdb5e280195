package relay

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
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
		MaxClockSkew:      DefaultMaxClockSkew,
	}
}

// JetStreamStore keeps SCONEs in a NATS JetStream key-value bucket, one key
// per client (a hash of the client's identity) holding all of the client's
// SCONEs. Every relay that shares the bucket sees every client's SCONEs, so
// a relay can die, and another take over, without losing state.
//
//   - Versions: Apply reads the key, merges the reply (newest version wins,
//     as in a scone.Dict) and writes it back only if the key's revision has
//     not moved meanwhile (compare-and-set), retrying on a conflict.
//   - Expiry: each write carries a time to live, the latest expiry of the
//     SCONEs it holds plus MaxClockSkew, so JetStream deletes the key when
//     its last SCONE has expired; reads skip SCONEs already expired. Expiry
//     is read by Now less MaxClockSkew, so a relay whose clock runs ahead
//     (by less than that) neither skips nor purges live SCONEs.
//   - Durability: a write is acknowledged by the NATS server(s) before the
//     relay forwards the reply. JetStream's default is to sync to disk every
//     2 minutes, so a power loss can lose acknowledged writes: run the NATS
//     servers with `sync_interval: always` (or replicas 3 or 5 on separate
//     machines) where that matters. See docs/modes.md.
type JetStreamStore struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg JetStreamConfig
	pre string           // the subject prefix of the bucket's keys
	now func() time.Time // the clock of expiry: cfg.Now less cfg.MaxClockSkew
	// expired counts the expired SCONEs reads skipped (NATS deletes them
	// with their key's TTL).
	expired atomic.Uint64
}

// NewJetStreamStore opens (creating it if needed) the bucket of cfg.
func NewJetStreamStore(ctx context.Context, js jetstream.JetStream, cfg JetStreamConfig) (*JetStreamStore, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
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
	return &JetStreamStore{js: js, kv: kv, cfg: cfg, pre: "$KV." + cfg.Bucket + ".", now: expiryClock(cfg.Now, cfg.MaxClockSkew)}, nil
}

// leaderReads turns off direct gets on the bucket's stream and reopens it.
// Key-value buckets are made with direct gets, which any replica may answer,
// including one that has not applied the latest write yet: a relay would
// then attach a client's older SCONEs and serve a stale read (scone chaos
// --mode=relay found it). Without them every read goes to the stream's
// leader, which holds every acknowledged write.
func leaderReads(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	st, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, err
	}
	if sc := st.CachedInfo().Config; sc.AllowDirect {
		sc.AllowDirect = false
		if _, err := js.UpdateStream(ctx, sc); err != nil {
			return nil, err
		}
	}
	return js.KeyValue(ctx, kv.Bucket())
}

// key is the bucket key of a client: a hash, so any identity makes a valid
// key and the bucket shows no identities.
func key(client string) string {
	sum := sha256.Sum256([]byte(client))
	return "c." + hex.EncodeToString(sum[:20])
}

// Get implements Store.
func (s *JetStreamStore) Get(ctx context.Context, client, target string) ([][]byte, error) {
	e, err := s.kv.Get(ctx, key(client))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "reading the JetStream store", err)
	}
	toks, err := decodeTokens(e.Value())
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

// Expired returns how many expired SCONEs reads have skipped.
func (s *JetStreamStore) Expired() uint64 { return s.expired.Load() }

// Apply implements Store.
func (s *JetStreamStore) Apply(ctx context.Context, client string, r *hook.Reply, sent [][]byte) error {
	k := key(client)
	for attempt := range s.cfg.Attempts {
		if attempt > 0 {
			// Lost a race to another relay: back off a little, at random.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(attempt)*int64(time.Millisecond) + 1))):
			case <-ctx.Done():
				return scone.WrapError(scone.CodeUnavailable, "updating the JetStream store", ctx.Err())
			}
		}
		var rev uint64
		d := scone.NewDict(scone.WithDictLimits(s.cfg.MaxPerClient, s.cfg.MaxBytesPerClient), scone.WithDictClock(s.now))
		e, err := s.kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return scone.WrapError(scone.CodeUnavailable, "reading the JetStream store", err)
		default:
			rev = e.Revision()
			toks, err := decodeTokens(e.Value())
			if err != nil {
				return err
			}
			for _, tok := range toks {
				if _, err := d.Put(tok); err != nil { // an expired one is simply not kept
					return err
				}
			}
		}
		if err := hook.ApplyIfBase(d, r, sent); err != nil {
			return err
		}
		done, err := s.write(ctx, k, rev, d.Tokens())
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
	return scone.NewError(scone.CodeUnavailable, "the JetStream store kept changing under this update; giving up")
}

// write stores toks under k if the key is still at revision rev. done is
// false when another writer came first.
func (s *JetStreamStore) write(ctx context.Context, k string, rev uint64, toks [][]byte) (done bool, err error) {
	if len(toks) == 0 {
		if rev == 0 {
			return true, nil
		}
		// A purge marker that JetStream removes after a minute, so former
		// clients leave nothing behind.
		err = s.kv.Purge(ctx, k, jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute))
		return s.outcome(err)
	}
	var latest time.Time
	for _, tok := range toks {
		if h, err := hook.Peek(tok); err == nil && h.Expires.After(latest) {
			latest = h.Expires
		}
	}
	// By the expiry clock: the key outlives its last SCONE by
	// MaxClockSkew, as the relays' reads do.
	ttl := max(time.Second, latest.Sub(s.now()).Round(time.Second)+time.Second)
	value := encodeTokens(toks)
	if rev == 0 {
		_, err = s.kv.Create(ctx, k, value, jetstream.KeyTTL(ttl))
		return s.outcome(err)
	}
	_, err = s.js.PublishMsg(ctx, &nats.Msg{Subject: s.pre + k, Data: value},
		jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	return s.outcome(err)
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
	return false, scone.WrapError(scone.CodeUnavailable, "writing the JetStream store", err)
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
