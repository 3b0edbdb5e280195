package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
)

// labBins are the binaries sconelab chaos runs as processes: scone (the
// relays), the bookstore example (its cluster nodes) and sconelab itself
// (the bookstore's tiers and the NATS servers, as "chaos child"). All are
// built with the sconechaos tag, the only build in which a process serves
// the fault control (internal/chaosctl) that skews its clock and cuts its
// gossip; the product's own build has no such hook.
type labBins struct {
	scone, bookstore, lab string
}

// labPackages are the packages of labBins, in their order.
var labPackages = []string{
	"github.com/scone-project/scone/cmd/scone",
	"github.com/scone-project/scone/examples/bookstore",
	"github.com/scone-project/scone/cmd/sconelab",
}

// binsIn returns the binaries as "go build -o dir/" names them.
func binsIn(dir string) labBins {
	return labBins{filepath.Join(dir, "scone"), filepath.Join(dir, "bookstore"), filepath.Join(dir, "sconelab")}
}

// buildLabBins builds labBins into dir from the source of the module the
// working directory is in, with the sconechaos tag, the build tags of this
// binary (a chaosbroken sconelab builds chaosbroken children), and tags.
func buildLabBins(dir string, tags ...string) (labBins, error) {
	all := append([]string{"sconechaos"}, tags...)
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-tags" && s.Value != "" {
				all = append(all, strings.Split(s.Value, ",")...)
			}
		}
	}
	slices.Sort(all)
	all = slices.Compact(all)
	args := append([]string{"build", "-tags", strings.Join(all, ","), "-o", dir + string(filepath.Separator)}, labPackages...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return labBins{}, fmt.Errorf("go %s (run sconelab chaos inside a clone of the scone repository, with Go installed, or give --bin): %v\n%s",
			strings.Join(args, " "), err, out)
	}
	return binsIn(dir), nil
}
