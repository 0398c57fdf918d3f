package bootstrap

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// buildTime is when the binary was linked (RFC 3339, UTC), set by `make build` with
// -ldflags "-X warehouse/bootstrap.buildTime=…": Go's build info records the commit's
// time, never the build's. Empty when nobody set it (go run, a plain go build). Only
// the linker writes it.
var buildTime string

// Version is `warehouse version` (and `warehouse --version`): the module version, VCS
// revision, commit time and build time of this binary, from its build info.
func Version(_ context.Context, args []string, stdout io.Writer) error {
	if helpRequested(args) {
		_, err := io.WriteString(stdout, "Usage: warehouse version (or warehouse --version)\n\nPrints the module version, VCS revision, commit time and build time of this binary.\n")
		return err
	}
	if len(args) != 0 {
		return usageError(fmt.Errorf("unexpected argument %q", clipArg(args[0])))
	}
	bi, _ := debug.ReadBuildInfo() // nil without build info: versionText says unknown
	_, err := io.WriteString(stdout, versionText(bi, buildTime))
	return err
}

// versionText formats what bi and built say about the binary, one "name value" line each.
// The revision is there only when the build stamped VCS information: `make build` asks
// for it (-buildvcs=auto), go run does not unless given -buildvcs=true, and GOFLAGS here
// and in CI turn it off for every other build.
func versionText(bi *debug.BuildInfo, built string) string {
	version, goVersion := "unknown", runtime.Version()
	vcs := map[string]string{}
	if bi != nil {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if strings.HasPrefix(s.Key, "vcs") {
				vcs[s.Key] = s.Value
			}
		}
	}
	revision, committed := "unknown (not stamped: use make build, or go run -buildvcs=true)", "unknown"
	if r := vcs["vcs.revision"]; r != "" {
		revision = r
		if vcs["vcs.modified"] == "true" {
			revision += " (with uncommitted changes)"
		}
	}
	if t := vcs["vcs.time"]; t != "" {
		committed = t
	}
	if built == "" {
		built = "unknown (only make build records it)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "warehouse %s\n", version)
	fmt.Fprintf(&b, "revision  %s\n", revision)
	fmt.Fprintf(&b, "committed %s\n", committed)
	fmt.Fprintf(&b, "built     %s\n", built)
	fmt.Fprintf(&b, "go        %s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
