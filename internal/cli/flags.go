package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Flags is a FlagSet whose every flag can also be set by an environment
// variable: SCONE_<COMMAND>_<FLAG>, upper case, dashes as underscores
// (--nats-url of "scone relay" is SCONE_RELAY_NATS_URL). A flag on the
// command line wins over the environment.
type Flags struct {
	*flag.FlagSet
	prog    string
	command string
}

// NewFlags returns the flags of command (a subcommand of prog), printing
// help and errors to out.
func NewFlags(prog, command string, out io.Writer) *Flags {
	fs := flag.NewFlagSet(prog+" "+command, flag.ContinueOnError)
	fs.SetOutput(out)
	return &Flags{FlagSet: fs, prog: prog, command: command}
}

// EnvName returns the environment variable of a flag.
func (f *Flags) EnvName(flagName string) string {
	return "SCONE_" + strings.ToUpper(f.command) + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args, then fills the flags not given from the environment.
// Errors name the flag (or variable) and the bad value.
func (f *Flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrHelp
		}
		return ErrUsage
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var errs []error
	f.VisitAll(func(fl *flag.Flag) {
		if set[fl.Name] {
			return
		}
		if v, ok := os.LookupEnv(f.EnvName(fl.Name)); ok {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q (for --%s): %v", f.EnvName(fl.Name), v, fl.Name, err))
			}
		}
	})
	if len(f.Args()) > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments: %q", f.Args()))
	}
	return errors.Join(errs...)
}

// SetSummary makes the command's help print summary (what it does), then
// every flag with its environment variable.
func (f *Flags) SetSummary(summary string) {
	f.Usage = func() {
		out := f.Output()
		fmt.Fprintf(out, "usage: %s %s [flags]\n\n%s\n\nflags (each also settable as SCONE_%s_<FLAG>):\n", f.prog, f.command, summary, strings.ToUpper(f.command))
		f.PrintDefaults()
	}
}

// LogFlags adds --log-format and --log-level and returns the function that
// makes the logger from them, writing to w.
func (f *Flags) LogFlags(w io.Writer) func() (*slog.Logger, error) {
	format := f.String("log-format", "text", "log format: text or json")
	level := f.String("log-level", "info", "log level: debug, info, warn or error")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, fmt.Errorf("--log-level=%q: want debug, info, warn or error", *level)
		}
		opts := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		}
		return nil, fmt.Errorf("--log-format=%q: want text or json", *format)
	}
}
