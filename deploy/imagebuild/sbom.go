package imagebuild

import (
	"bytes"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// SBOMPath is where Talos (v1.11 and later) reads the SPDX documents of
// extensions into SBOMItem resources (`talosctl get sboms`).
var SBOMPath = "rootfs" + constants.ExtensionSPDXPath + "/" + ExtensionName + ".spdx.json"

// SBOMNameSuffix ends the name of every package but the extension's own.
// Talos keys SBOM items by package name and reads extensions after its own
// documents: a module listed under its bare path would overwrite Talos's
// entry for the same module.
const SBOMNameSuffix = " (" + ExtensionName + ")"

const noAssertion = "NOASSERTION"

// SBOM writes the SPDX 2.3 document of one platform's image: the extension
// as the top package, and every Go module compiled into that platform's
// binary (from the build information the Go toolchain embeds) plus the Go
// standard library, each with its purl and, for modules, the go.sum hash.
func SBOM(in Input, p Platform) ([]byte, error) {
	info, err := buildinfo.Read(bytes.NewReader(p.Binary))
	if err != nil {
		return nil, fmt.Errorf("sbom: daemon binary for linux/%s: read Go build information: %w", p.Arch, err)
	}

	if !commitHash.MatchString(in.Revision) {
		return nil, fmt.Errorf("sbom: revision %q is not a full commit hash", in.Revision)
	}

	top := &spdx.Package{
		PackageName:             ExtensionName,
		PackageSPDXIdentifier:   "Package-" + ExtensionName,
		PackageVersion:          in.Version,
		PackageSupplier:         &common.Supplier{Supplier: "kommodity-io", SupplierType: "Organization"},
		PackageDownloadLocation: "git+" + SourceURL + "@" + in.Revision,
		PackageHomePage:         SourceURL,
		PackageLicenseConcluded: noAssertion,
		PackageLicenseDeclared:  License,
		PackageCopyrightText:    noAssertion,
		PackageSummary:          Description,
		PrimaryPackagePurpose:   "APPLICATION",
		PackageExternalReferences: []*spdx.PackageExternalReference{
			purlRef(goPURL(info.Main.Path, in.Version)),
		},
	}

	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      fmt.Sprintf("%s %s linux/%s", ExtensionName, in.Version, p.Arch),
		DocumentNamespace: fmt.Sprintf("%s/spdx/%s/%s/linux-%s", SourceURL, in.Version, in.Revision, p.Arch),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{
				{CreatorType: "Organization", Creator: "kommodity-io"},
				{CreatorType: "Tool", Creator: "kommodity-autobootstrap-build-image-" + in.Version},
			},
			Created: in.Created.UTC().Truncate(time.Second).Format(time.RFC3339),
		},
		Packages: []*spdx.Package{top},
		Relationships: []*spdx.Relationship{{
			RefA:         common.MakeDocElementID("", "DOCUMENT"),
			RefB:         common.MakeDocElementID("", string(top.PackageSPDXIdentifier)),
			Relationship: common.TypeRelationshipDescribe,
		}},
	}

	ids := map[common.ElementID]bool{top.PackageSPDXIdentifier: true}

	for _, pkg := range compiledPackages(info) {
		pkg.PackageSPDXIdentifier = uniqueID(ids, "Package-go-"+pkg.PackageName)
		pkg.PackageName += SBOMNameSuffix

		doc.Packages = append(doc.Packages, pkg)
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA:         common.MakeDocElementID("", string(top.PackageSPDXIdentifier)),
			RefB:         common.MakeDocElementID("", string(pkg.PackageSPDXIdentifier)),
			Relationship: common.TypeRelationshipContains,
		})
	}

	var out bytes.Buffer
	if err := spdxjson.Write(doc, &out, spdxjson.Indent("  "), spdxjson.EscapeHTML(false)); err != nil {
		return nil, fmt.Errorf("sbom: encode SPDX document: %w", err)
	}

	return out.Bytes(), nil
}

// compiledPackages lists the Go standard library and every module of the
// binary other than the main one (that is the extension itself), sorted by
// path, named by bare path (the caller adds the suffix).
func compiledPackages(info *buildinfo.BuildInfo) []*spdx.Package {
	goVersion := strings.TrimPrefix(info.GoVersion, "go")

	out := []*spdx.Package{goPackage("stdlib", info.GoVersion, goPURL("stdlib", goVersion))}

	deps := append([]*debug.Module(nil), info.Deps...)
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })

	for _, dep := range deps {
		// The replacement is what was compiled.
		m := dep
		if dep.Replace != nil {
			m = dep.Replace
		}

		pkg := goPackage(dep.Path, m.Version, goPURL(m.Path, m.Version))

		if sum, ok := h1SHA256(m.Sum); ok {
			pkg.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: sum}}
			pkg.PackageComment = "go.sum " + m.Sum + " (the checksum is its SHA-256, in hex)"
		}

		if dep.Replace != nil {
			pkg.PackageComment = strings.TrimSpace(fmt.Sprintf("replaced by %s %s. %s", m.Path, m.Version, pkg.PackageComment))
		}

		out = append(out, pkg)
	}

	return out
}

func goPackage(name, version, purl string) *spdx.Package {
	return &spdx.Package{
		PackageName:               name,
		PackageVersion:            version,
		PackageDownloadLocation:   noAssertion,
		PackageLicenseConcluded:   noAssertion,
		PackageLicenseDeclared:    noAssertion,
		PackageCopyrightText:      noAssertion,
		PrimaryPackagePurpose:     "LIBRARY",
		PackageExternalReferences: []*spdx.PackageExternalReference{purlRef(purl)},
	}
}

// goPURL is pkg:golang/<module path>@<version>, the path split into
// namespace and name as the purl spec has it.
func goPURL(path, version string) string {
	namespace, name := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		namespace, name = path[:i], path[i+1:]
	}

	return packageurl.NewPackageURL(packageurl.TypeGolang, namespace, name, version, nil, "").ToString()
}

func purlRef(purl string) *spdx.PackageExternalReference {
	return &spdx.PackageExternalReference{Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl}
}

// h1SHA256 turns a go.sum hash (h1:<base64 SHA-256 of the module's file
// list>) into the hex that an SPDX SHA256 checksum holds.
func h1SHA256(sum string) (string, bool) {
	b64, ok := strings.CutPrefix(sum, "h1:")
	if !ok {
		return "", false
	}

	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return "", false
	}

	return hex.EncodeToString(raw), true
}

var notInElementID = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// uniqueID makes an SPDX element ID (letters, digits, '.', '-') from name,
// numbered when two names map to one ID.
func uniqueID(taken map[common.ElementID]bool, name string) common.ElementID {
	base := notInElementID.ReplaceAllString(name, "-")

	id := common.ElementID(base)
	for n := 2; taken[id]; n++ {
		id = common.ElementID(fmt.Sprintf("%s-%d", base, n))
	}

	taken[id] = true

	return id
}

// SBOMPackageCount is the number of packages in the SBOM of p.
func SBOMPackageCount(in Input, p Platform) (int, error) {
	raw, err := SBOM(in, p)
	if err != nil {
		return 0, err
	}

	var doc struct {
		Packages []json.RawMessage `json:"packages"`
	}

	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("sbom: count packages: %w", err)
	}

	return len(doc.Packages), nil
}
