package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/scone-project/scone"
)

// ReloadKeysOnHUP reloads a key file into ring at every SIGHUP until ctx is
// done. A file that does not load leaves the ring as it was, and is logged.
func ReloadKeysOnHUP(ctx context.Context, path string, ring *scone.KeyRing, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				ReloadKeys(path, ring, log)
			}
		}
	}()
}

// ReloadKeys loads a key file into ring and logs the outcome.
func ReloadKeys(path string, ring *scone.KeyRing, log *slog.Logger) error {
	if err := scone.ReloadKeyFile(ring, path); err != nil {
		log.Error("key file not reloaded; keeping the keys in use", "file", path, "err", WithCause(err))
		return err
	}
	var ids []uint32
	for _, k := range ring.Keys() {
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	log.Info("key file reloaded", "file", path, "primary", ring.Primary(), "keys", ids)
	return nil
}

// WithCause adds to a scone error the cause it keeps to itself (a scone
// error's message never includes it, since servers send messages to
// clients); on a command line the cause is what the user needs.
func WithCause(err error) error {
	var se *scone.Error
	if errors.As(err, &se) {
		if cause := errors.Unwrap(se); cause != nil {
			return fmt.Errorf("%w: %v", err, cause)
		}
	}
	return err
}
