package cli

import "testing"

func TestTracingOn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, false},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	} {
		if got := tracingOn(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%v: tracing on %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestProtocol(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if p := protocol(get); p != "http/protobuf" {
		t.Errorf("default protocol %q, want http/protobuf", p)
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	if p := protocol(get); p != "grpc" {
		t.Errorf("protocol %q, want grpc", p)
	}
	env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
	if p := protocol(get); p != "http/protobuf" {
		t.Errorf("the traces protocol %q does not override, want http/protobuf", p)
	}
}
