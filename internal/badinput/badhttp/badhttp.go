// Package badhttp sends the cases of the bad-input corpus (package
// badinput) over HTTP, as a client without the hook would, and checks the
// answers.
package badhttp

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/sconehttp"
)

// Get sends a GET of url with the case's payloads on its carrier, and
// returns the response's status, its Scone-Error header and its body.
func Get(url string, cs *badinput.Case) (status int, code string, body []byte, err error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	switch cs.Carrier {
	case badinput.Envelope:
		texts := make([]string, len(cs.Payloads))
		for i, p := range cs.Payloads {
			texts[i] = scone.EncodeText(p)
		}
		req.Header.Set(sconehttp.HeaderSCONE, strings.Join(texts, ","))
	case badinput.Header:
		for _, p := range cs.Payloads {
			req.Header.Add(sconehttp.HeaderSCONE, string(p))
		}
	case badinput.Cookie:
		for _, p := range cs.Payloads {
			req.Header.Add("Cookie", string(p))
		}
	default:
		return 0, "", nil, fmt.Errorf("badhttp: carrier %q is not for HTTP", cs.Carrier)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Header.Get(sconehttp.ErrorHeader), body, nil
}

// Check returns an error unless status and code are the answer want
// describes, and the manifest's status is the one its code maps to.
func Check(status int, code string, want *badinput.Expect) error {
	switch {
	case strconv.Itoa(status) != want.Status:
		return fmt.Errorf("status %d, want %s", status, want.Status)
	case want.OK() || want.Code == "":
		return nil
	case code != want.Code:
		return fmt.Errorf("%s %q, want %s", sconehttp.ErrorHeader, code, want.Code)
	}
	c, ok := hook.ParseCode(want.Code)
	if !ok {
		return fmt.Errorf("the manifest names an unknown code %q", want.Code)
	}
	if m := sconehttp.HTTPStatus(c); strconv.Itoa(m) != want.Status {
		return fmt.Errorf("the manifest says %s for %s, which maps to %d", want.Status, want.Code, m)
	}
	return nil
}
