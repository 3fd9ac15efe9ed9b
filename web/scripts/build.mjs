/**
 * Bundle the client with esbuild into dist/:
 *   dist/swarmcast.mjs  ES module, for bundlers and <script type="module">
 *   dist/swarmcast.js   plain script (IIFE, minified) exposing the global `swarmcast`
 * each with a source map. hls.js stays external: the page (or the app's bundler) provides it.
 *
 * Usage: node scripts/build.mjs [--outdir DIR]
 */

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

/**
 * Build both bundles into `outdir` and return esbuild's metafiles.
 *
 * @param {string} [outdir]
 */
export async function build(outdir = path.join(root, 'dist')) {
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
  const common = {
    entryPoints: [path.join(root, 'src', 'index.js')],
    bundle: true,
    sourcemap: true,
    // Browsers with WebRTC data channels and ES2020 (BigInt-free code, but ?? and ?.).
    target: ['es2020', 'chrome90', 'firefox88', 'safari15'],
    external: ['hls.js'],
    banner: { js: `/* ${pkg.name} ${pkg.version} (${pkg.license}) */` },
    metafile: true,
    logLevel: 'warning',
  };
  const esm = await esbuild.build({
    ...common,
    format: 'esm',
    outfile: path.join(outdir, 'swarmcast.mjs'),
  });
  const iife = await esbuild.build({
    ...common,
    format: 'iife',
    globalName: 'swarmcast',
    minify: true,
    outfile: path.join(outdir, 'swarmcast.js'),
  });
  return { esm: esm.metafile, iife: iife.metafile };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const at = process.argv.indexOf('--outdir');
  const outdir = at > 0 ? path.resolve(process.argv[at + 1]) : undefined;
  const { esm, iife } = await build(outdir);
  for (const meta of [esm, iife]) {
    for (const [file, info] of Object.entries(meta.outputs)) {
      if (!file.endsWith('.map')) console.log(`${file}  ${(info.bytes / 1024).toFixed(1)} KiB`);
    }
  }
}
