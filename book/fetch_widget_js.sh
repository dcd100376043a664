#!/usr/bin/env bash
# Put local copies of the book's JavaScript into book/_widget_js/ so that the
# static book renders its widgets and equations with no network (readers may be
# offline). _config.yml adds the folder to html_static_path (it lands in _static/).
#
#   require.js          RequireJS 2.3.8 (the widget bundle is an AMD module set)
#   embed-amd.js        @jupyter-widgets/html-manager 1.0.15 (ipywidgets 8):
#                       base + controls + the HTML manager in one bundle
#   *.woff2 *.woff ...  the icon fonts embed-amd.js refers to (same folder)
#   widgets-config.js   our own: points RequireJS and the bundle at this folder
#                       instead of a CDN (see the comment inside)
#   mathjax/            MathJax 3.2.2 (es5: tex-mml-chtml.js, fonts, lazily loaded
#                       extensions), used through `mathjax_path` in _config.yml
#
# Idempotent: does nothing when the files are already there (FORCE=1 refetches).
# Needs npm and a reachable npm registry. Exits non-zero with a message on failure.
set -euo pipefail

HTML_MANAGER_VERSION=1.0.15
REQUIREJS_VERSION=2.3.8
MATHJAX_VERSION=3.2.2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/_widget_js"
stamp="$dest/.versions"
want="html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION mathjax@$MATHJAX_VERSION config@4"

die() { echo "fetch_widget_js.sh: error: $*" >&2; exit 1; }

if [[ "${FORCE:-0}" != 1 && -f "$stamp" && "$(cat "$stamp")" == "$want" \
      && -s "$dest/require.js" && -s "$dest/embed-amd.js" && -s "$dest/widgets-config.js" \
      && -s "$dest/mathjax/tex-mml-chtml.js" ]]; then
    echo "fetch_widget_js.sh: $dest is up to date ($want)"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm is not installed (Debian: apt-get install -y npm)"
command -v tar >/dev/null 2>&1 || die "tar is not installed"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch_widget_js.sh: npm pack @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION requirejs@$REQUIREJS_VERSION mathjax@$MATHJAX_VERSION"
(cd "$work" && npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
    "requirejs@$REQUIREJS_VERSION" "mathjax@$MATHJAX_VERSION" >"$work/npm.log" 2>&1) \
    || { cat "$work/npm.log" >&2; die "npm pack failed (is the npm registry reachable?)"; }

mkdir -p "$work/hm" "$work/rq" "$work/mj"
tar -xzf "$work/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$work/hm" \
    || die "could not unpack the html-manager tarball"
tar -xzf "$work/requirejs-$REQUIREJS_VERSION.tgz" -C "$work/rq" \
    || die "could not unpack the requirejs tarball"
tar -xzf "$work/mathjax-$MATHJAX_VERSION.tgz" -C "$work/mj" \
    || die "could not unpack the mathjax tarball"

[[ -s "$work/hm/package/dist/embed-amd.js" ]] || die "embed-amd.js missing from the html-manager package"
[[ -s "$work/rq/package/require.js" ]] || die "require.js missing from the requirejs package"
[[ -s "$work/mj/package/es5/tex-mml-chtml.js" ]] || die "es5/tex-mml-chtml.js missing from the mathjax package"

# Assemble in a fresh folder, then swap it in, so a failure never leaves half a folder.
staging="$work/_widget_js"
mkdir -p "$staging"
cp "$work/hm/package/dist/embed-amd.js" "$staging/"
# The fonts and images the bundle's CSS references, by hashed name, next to it.
find "$work/hm/package/dist" -maxdepth 1 -type f \
    \( -name '*.woff2' -o -name '*.woff' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
    -exec cp {} "$staging/" \;
cp "$work/rq/package/require.js" "$staging/"
# MathJax: the combined TeX+MathML/CHTML component plus the folders it loads
# lazily (fonts, TeX extensions, menu, accessibility); MathJax finds them next to
# its own script. The other combined components are left out.
mkdir -p "$staging/mathjax"
cp "$work/mj/package/es5/tex-mml-chtml.js" "$work/mj/package/LICENSE" "$staging/mathjax/"
for folder in input output ui a11y sre adaptors; do
    cp -r "$work/mj/package/es5/$folder" "$staging/mathjax/"
done

# widgets-config.js is loaded after require.js and before embed-amd.js.
# - embed-amd.js defines named AMD modules (@jupyter-widgets/base, controls,
#   html-manager, ...); webpack derives the folder its fonts come from from the
#   RequireJS module URI, which by default is <page folder>/@jupyter-widgets/...
#   Mapping every name to this folder makes the fonts load from here at any page depth.
# - Modules that the bundle does not contain are fetched from
#   "data-jupyter-widgets-cdn" (jsDelivr by default). We point it at a folder
#   here, so a missing module fails locally instead of reaching the network.
cat >"$staging/widgets-config.js" <<'EOF'
/* tasknb: serve the ipywidgets bundle from this folder, never from a CDN. */
(function () {
  var script = document.currentScript;
  var here = script.src.replace(/[^/]*$/, "");
  var names = [
    "@jupyter-widgets/base", "@jupyter-widgets/controls",
    "@jupyter-widgets/base7", "@jupyter-widgets/controls7",
    "@jupyter-widgets/html-manager"
  ];
  var paths = {};
  names.forEach(function (name) { paths[name] = here + "embed-amd"; });
  // the module that injects the CSS: its URI decides where the fonts come from
  paths["@jupyter-widgets/html-manager/dist/libembed-amd"] = here + "embed-amd";
  if (window.requirejs) { window.requirejs.config({ paths: paths }); }
  script.setAttribute("data-jupyter-widgets-cdn", here + "no-cdn/");
})();
EOF

echo "$want" >"$staging/.versions"
rm -rf "$dest"
mv "$staging" "$dest"
echo "fetch_widget_js.sh: wrote $(ls "$dest" | wc -l) files to $dest"
