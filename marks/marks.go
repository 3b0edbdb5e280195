// Package marks keeps the marks of scone Sealers (scone.MarkStore) where
// every server replica of a service shares them: a NATS JetStream key-value
// bucket, written with compare-and-set on the key's revision. With it, a
// SCONE version is spent once across the fleet, and Sealer.Revoke reaches
// every replica at once (see scone.WithMarkStore).
//
// The in-process store is scone.NewMemoryMarkStore; this package is apart
// so that programs without NATS do not link it.
package marks

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone"
)

// Config configures a JetStream mark store.
type Config struct {
	// Bucket is the key-value bucket's name (default "scone-marks"). The
	// replicas of a service must use the same one; services may share it.
	Bucket string
	// Replicas is how many NATS servers keep each mark: 1, 3 or 5
	// (default 1). With 3, a mark survives the loss of one server.
	Replicas int
	// Now is the clock the keys' lifetimes are computed with (default
	// time.Now): each key lives until the expiry the Sealer gives it.
	Now func() time.Time
	// Timeout bounds each read and write (default 2s): a store that does
	// not answer in time fails the call as unavailable.
	Timeout time.Duration
}

// DefaultConfig returns the defaults: bucket "scone-marks", one replica.
func DefaultConfig() Config {
	return Config{
		Bucket:   "scone-marks", // shared by the services of a deployment
		Replicas: 1,             // no copy: a store down fails calls, never admits them
		Now:      time.Now,
		Timeout:  2 * time.Second, // well inside a typical call deadline
	}
}

// JetStream is a scone.MarkStore in a JetStream key-value bucket. It is safe
// for concurrent use; the caller owns the NATS connection.
type JetStream struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	pre     string // the subject prefix of the bucket's keys
	now     func() time.Time
	timeout time.Duration
}

var _ scone.MarkStore = (*JetStream)(nil)

// NewJetStream opens (creating it if needed) the bucket of cfg.
func NewJetStream(ctx context.Context, js jetstream.JetStream, cfg Config) (*JetStream, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultConfig().Bucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultConfig().Timeout
	}
	switch cfg.Replicas {
	case 1, 3, 5:
	default:
		return nil, errors.New("marks: JetStream replicas must be 1, 3 or 5, not " + strconv.Itoa(cfg.Replicas))
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         cfg.Bucket,
		Description:    "marks of scone sealers: newest versions, revocations, epochs",
		History:        1,
		Replicas:       cfg.Replicas,
		Storage:        jetstream.FileStorage,
		LimitMarkerTTL: time.Minute, // allows a TTL per key
	})
	if err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "opening the JetStream bucket "+cfg.Bucket, err)
	}
	// Reads go to the stream's leader, which holds every acknowledged
	// write: a replica that lags would let a spent version through.
	st, err := js.Stream(ctx, "KV_"+cfg.Bucket)
	if err == nil {
		if sc := st.CachedInfo().Config; sc.AllowDirect {
			sc.AllowDirect = false
			_, err = js.UpdateStream(ctx, sc)
		}
	}
	if err == nil {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "opening the JetStream bucket "+cfg.Bucket, err)
	}
	return &JetStream{js: js, kv: kv, pre: "$KV." + cfg.Bucket + ".", now: cfg.Now, timeout: cfg.Timeout}, nil
}

// Get implements scone.MarkStore.
func (s *JetStream) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, scone.WrapError(scone.CodeUnavailable, "reading the mark store", err)
	}
	return e.Value(), e.Revision(), nil
}

// Put implements scone.MarkStore: a Create when rev is 0, else a publish
// that expects rev as the key's last revision. The key lives until expires
// (at least a second), then JetStream deletes it.
func (s *JetStream) Put(ctx context.Context, key string, value []byte, rev uint64, expires time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ttl := max(time.Second, expires.Sub(s.now()).Round(time.Second)+time.Second)
	var err error
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, value, jetstream.KeyTTL(ttl))
	} else {
		_, err = s.js.PublishMsg(ctx, &nats.Msg{Subject: s.pre + key, Data: value},
			jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
	}
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return scone.WrapError(scone.CodeConflict, "the mark changed", err)
	}
	return scone.WrapError(scone.CodeUnavailable, "writing the mark store", err)
}
