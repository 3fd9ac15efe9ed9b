/**
 * Identity of swarms and segments: the twin of `peer/ids.py` (docs/protocol.md §4).
 *
 * Two viewers only trade segments if they compute the same ids from what their players load,
 * and a browser must land in the same swarm as a Python seed. So the URL handling below is a
 * port of what `peer/ids.py` calls (Python 3.11's `urllib.parse.urlsplit` / `urljoin` and
 * `quote`), not the WHATWG `URL` parser, which differs on purpose-irrelevant but id-relevant
 * details (backslashes, dot segments inside `%2e`, IPv6 checks, `;params`...). The shared
 * vectors in tests/vectors/ids.json pin the results; test/python-twin.test.js compares this
 * module with the Python one on thousands of generated URLs.
 *
 * Hashing is async because it uses WebCrypto when available (see core/sha256.js).
 *
 * @module core/ids
 */

import { sha256 } from './sha256.js';
import { concat, describe, isWellFormed } from './util.js';

/** Largest media sequence number or init id on the wire: 2**53 - 1, exact in JS numbers. */
export const MAX_SEGMENT_NUMBER = Number.MAX_SAFE_INTEGER;
/** Length of a swarm id in characters (22 base64url characters = 132 bits of SHA-256). */
export const SWARM_ID_LENGTH = 22;
/** What the signalling server accepts as a swarm id; every id made here matches it. */
export const SWARM_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Longest explicit content id or rendition id accepted, in UTF-8 bytes. */
export const MAX_LABEL_BYTES = 1024;

/** The two key spaces of segments inside one swarm. */
export const SegmentKind = Object.freeze({
  /** A media segment, keyed by its media sequence number. */
  MEDIA: 'media',
  /** An EXT-X-MAP initialisation segment, keyed by {@link initSegmentId}. */
  INIT: 'init',
});

/** Wire value (u8) of each segment kind. */
export const SEGMENT_KIND_CODES = Object.freeze({ media: 0, init: 1 });

/**
 * One segment of one swarm, shaped like the vectors' JSON: `{kind: "media", number: 42}`.
 *
 * @typedef {object} SegmentKey
 * @property {'media'|'init'} kind which key space `number` belongs to
 * @property {number} number media sequence number or init id, 0 .. 2**53-1
 */

const encoder = new TextEncoder();
const SWARM_DOMAIN = encoder.encode('swarmcast/swarm/v1\x00');
const INIT_DOMAIN = encoder.encode('swarmcast/init/v1\x00');

/**
 * Return `number` if it is a valid media sequence number / init id, else throw.
 *
 * @param {number} number
 * @returns {number}
 */
export function checkSegmentNumber(number) {
  if (typeof number !== 'number' || !Number.isInteger(number)) {
    throw new TypeError(`segment number must be an integer, not ${describe(number)}`);
  }
  if (number < 0 || number > MAX_SEGMENT_NUMBER) {
    throw new RangeError(`segment number ${number} is outside 0..2**53-1`);
  }
  return number;
}

/**
 * The key of the media segment with media sequence number `sequence`.
 *
 * @param {number} sequence
 * @returns {SegmentKey}
 */
export function mediaKey(sequence) {
  return { kind: SegmentKind.MEDIA, number: checkSegmentNumber(sequence) };
}

/**
 * The key of the init segment whose id is `initId` (see {@link initSegmentId}).
 *
 * @param {number} initId
 * @returns {SegmentKey}
 */
export function initKey(initId) {
  return { kind: SegmentKind.INIT, number: checkSegmentNumber(initId) };
}

/**
 * `"media:42"` / `"init:7"`: a key as a string, for Map keys and logs (same as Python's str()).
 *
 * @param {SegmentKey} key
 * @returns {string}
 */
export function keyToString(key) {
  return `${key.kind}:${key.number}`;
}

/**
 * Whether `value` is a well-formed segment key.
 *
 * @param {unknown} value
 * @returns {value is SegmentKey}
 */
export function isSegmentKey(value) {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.hasOwn(SEGMENT_KIND_CODES, value.kind) &&
    Number.isInteger(value.number) &&
    value.number >= 0 &&
    value.number <= MAX_SEGMENT_NUMBER
  );
}

// ------------------------------------------------------------------- urllib.parse, the parts used

// What Python's str.strip() removes (str.isspace), which is not JavaScript's trim() set.
const PY_SPACE = '\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');
const SCHEME_CHARS = /^[A-Za-z0-9+.-]*$/;
const USES_RELATIVE = new Set(
  ',ftp,http,gopher,nntp,imap,wais,file,https,shttp,mms,prospero,rtsp,rtsps,rtspu,sftp,svn,svn+ssh,ws,wss'.split(','),
);
const USES_NETLOC = new Set(
  ',ftp,http,gopher,nntp,telnet,imap,wais,file,mms,https,shttp,snews,prospero,rtsp,rtsps,rtspu,rsync,svn,svn+ssh,sftp,nfs,git,git+ssh,ws,wss'.split(
    ',',
  ),
);
const USES_PARAMS = new Set(
  ',ftp,hdl,prospero,http,imap,https,shttp,rtsp,rtsps,rtspu,sip,sips,mms,sftp,tel'.split(','),
);

/** Python's urlsplit(url, scheme): {scheme, netloc, path, query, fragment}; throws like it. */
function urlsplit(url, defaultScheme = '') {
  url = url.replace(/^[\x00-\x20]+/, '').replace(/[\t\r\n]/g, '');
  let scheme = defaultScheme;
  let netloc = '';
  let query = '';
  let fragment = '';
  const colon = url.indexOf(':');
  if (colon > 0 && /^[A-Za-z]/.test(url) && SCHEME_CHARS.test(url.slice(0, colon))) {
    scheme = url.slice(0, colon).toLowerCase();
    url = url.slice(colon + 1);
  }
  if (url.startsWith('//')) {
    const end = url.slice(2).search(/[/?#]/);
    const delim = end < 0 ? url.length : end + 2;
    netloc = url.slice(2, delim);
    url = url.slice(delim);
    checkBrackets(netloc);
  }
  let hash = url.indexOf('#');
  if (hash >= 0) {
    fragment = url.slice(hash + 1);
    url = url.slice(0, hash);
  }
  hash = url.indexOf('?');
  if (hash >= 0) {
    query = url.slice(hash + 1);
    url = url.slice(0, hash);
  }
  checkNetlocNfkc(netloc);
  return { scheme, netloc, path: url, query, fragment };
}

function checkBrackets(netloc) {
  const open = netloc.includes('[');
  const close = netloc.includes(']');
  if (open !== close) throw new Error(`invalid IPv6 URL: host ${JSON.stringify(netloc)}`);
  if (!open) return;
  const host = netloc.slice(netloc.indexOf('[') + 1).split(']')[0];
  if (host.startsWith('v')) {
    if (!/^v[a-fA-F0-9]+\.[^]+$/.test(host)) throw new Error('IPvFuture address is invalid');
  } else if (isIPv4(host)) {
    throw new Error('an IPv4 address cannot be in brackets');
  } else if (!isIPv6(host)) {
    throw new Error(`${JSON.stringify(host)} does not appear to be an IPv4 or IPv6 address`);
  }
}

/** Python's ipaddress.IPv4Address rules: four decimal octets, no leading zeros. */
function isIPv4(text) {
  if (text.includes('/')) return false;
  const octets = text.split('.');
  return (
    octets.length === 4 &&
    octets.every((o) => /^[0-9]{1,3}$/.test(o) && (o === '0' || o[0] !== '0') && Number(o) <= 255)
  );
}

/** Python's ipaddress.IPv6Address rules (optional %scope, one "::", IPv4 tail). */
function isIPv6(text) {
  if (text.includes('/')) return false;
  const percent = text.indexOf('%');
  let address = text;
  if (percent >= 0) {
    const scope = text.slice(percent + 1);
    if (!scope || scope.includes('%')) return false;
    address = text.slice(0, percent);
  }
  if (!address) return false;
  const parts = address.split(':');
  if (parts.length < 3) return false;
  if (parts[parts.length - 1].includes('.')) {
    if (!isIPv4(parts.pop())) return false;
    parts.push('0', '0');
  }
  if (parts.length > 9) return false;
  let skip = -1;
  for (let i = 1; i < parts.length - 1; i++) {
    if (!parts[i]) {
      if (skip >= 0) return false;
      skip = i;
    }
  }
  let hi;
  let lo;
  if (skip >= 0) {
    hi = skip;
    lo = parts.length - skip - 1;
    if (!parts[0] && --hi) return false;
    if (!parts[parts.length - 1] && --lo) return false;
    if (8 - (hi + lo) < 1) return false;
  } else {
    if (parts.length !== 8 || !parts[0] || !parts[parts.length - 1]) return false;
    hi = parts.length;
    lo = 0;
  }
  const hextets = [...parts.slice(0, hi), ...parts.slice(parts.length - lo)];
  return hextets.every((h) => /^[0-9a-fA-F]{1,4}$/.test(h));
}

/** Python's _checknetloc: a non-ASCII host must not hide "/?#@:" behind NFKC forms. */
function checkNetlocNfkc(netloc) {
  // eslint-disable-next-line no-control-regex
  if (!netloc || /^[\x00-\x7f]*$/.test(netloc)) return;
  const bare = netloc.replace(/[@:#?]/g, '');
  const folded = bare.normalize('NFKC');
  if (bare !== folded && /[/?#@:]/.test(folded)) {
    throw new Error(`netloc ${JSON.stringify(netloc)} contains invalid characters under NFKC`);
  }
}

/** Python's urlparse: urlsplit plus ";params" of the last path segment for some schemes. */
function urlparse(url, defaultScheme) {
  const parts = urlsplit(url, defaultScheme);
  let params = '';
  if (USES_PARAMS.has(parts.scheme) && parts.path.includes(';')) {
    const path = parts.path;
    const i = path.includes('/') ? path.indexOf(';', path.lastIndexOf('/')) : path.indexOf(';');
    if (i >= 0) {
      params = path.slice(i + 1);
      parts.path = path.slice(0, i);
    }
  }
  return { ...parts, params };
}

function urlunparse({ scheme, netloc, path, params, query, fragment }) {
  let url = params ? `${path};${params}` : path;
  if (netloc || (scheme && USES_NETLOC.has(scheme) && !url.startsWith('//'))) {
    if (url && !url.startsWith('/')) url = `/${url}`;
    url = `//${netloc}${url}`;
  }
  if (scheme) url = `${scheme}:${url}`;
  if (query) url = `${url}?${query}`;
  if (fragment) url = `${url}#${fragment}`;
  return url;
}

/** Python 3.11's urljoin(base, url). */
function urljoin(base, url) {
  if (!base) return url;
  if (!url) return base;
  const b = urlparse(base, '');
  const u = urlparse(url, b.scheme);
  if (u.scheme !== b.scheme || !USES_RELATIVE.has(u.scheme)) return url;
  if (USES_NETLOC.has(u.scheme)) {
    if (u.netloc) return urlunparse(u);
    u.netloc = b.netloc;
  }
  if (!u.path && !u.params) {
    return urlunparse({ ...u, path: b.path, params: b.params, query: u.query || b.query });
  }
  const baseParts = b.path.split('/');
  if (baseParts[baseParts.length - 1] !== '') baseParts.pop();
  let segments;
  if (u.path.startsWith('/')) {
    segments = u.path.split('/');
  } else {
    segments = [...baseParts, ...u.path.split('/')];
    if (segments.length > 2) {
      const middle = segments.slice(1, -1).filter(Boolean);
      segments = [segments[0], ...middle, segments[segments.length - 1]];
    }
  }
  const resolved = [];
  for (const segment of segments) {
    if (segment === '..') resolved.pop();
    else if (segment !== '.') resolved.push(segment);
  }
  const last = segments[segments.length - 1];
  if (last === '.' || last === '..') resolved.push('');
  return urlunparse({ ...u, path: resolved.join('/') || '/' });
}

// ------------------------------------------------------------------------- path normalisation

// Bytes quote() leaves alone: RFC 3986 unreserved, plus pchar sub-delims, ":@", "/" and "%".
const PATH_SAFE = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~' +
  "/:@!$&'()*+,;=%") {
  PATH_SAFE[c.charCodeAt(0)] = 1;
}
const UNRESERVED = /^[A-Za-z0-9._~-]$/;
const HEX = '0123456789ABCDEF';

function quotePath(path) {
  if (!isWellFormed(path)) throw new Error('URL holds a lone UTF-16 surrogate: not valid text');
  let out = '';
  for (const byte of encoder.encode(path)) {
    out += byte < 128 && PATH_SAFE[byte] ? String.fromCharCode(byte) : `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
  }
  return out;
}

function normalizeEscape(_match, hex) {
  const char = String.fromCharCode(parseInt(hex, 16));
  return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
}

function removeDotSegments(path) {
  const out = [];
  const segments = path.split('/').slice(1);
  segments.forEach((segment, index) => {
    const last = index === segments.length - 1;
    if (segment === '..') {
      out.pop();
      if (last) out.push('');
    } else if (segment === '.') {
      if (last) out.push('');
    } else {
      out.push(segment);
    }
  });
  return `/${out.join('/')}`;
}

/**
 * The host-independent form of `url`: its path only, in canonical RFC 3986 form
 * (docs/protocol.md §4.1). Scheme, user info, host, port, query and fragment are dropped;
 * escapes of unreserved characters are decoded, others upper-cased; characters a path may not
 * hold literally are escaped; dot segments are resolved and repeated slashes collapsed.
 *
 * @param {string} url an absolute URL, or an absolute path starting with "/"
 * @returns {string}
 * @throws {Error} if `url` is empty, relative, or not a parseable URL
 */
export function normalizePath(url) {
  if (typeof url !== 'string' || !url.replace(PY_STRIP, '')) {
    throw new Error("URL is empty: expected an absolute URL or a path starting with '/'");
  }
  const parts = urlsplit(url.replace(PY_STRIP, ''));
  let path = parts.path;
  if (!path.startsWith('/')) {
    if (!parts.netloc) {
      throw new Error(
        `cannot take a content path from ${JSON.stringify(url)}: expected an absolute URL ` +
          "(https://host/path) or a path starting with '/'",
      );
    }
    path = `/${path}`;
  }
  path = path.replace(/%(?![0-9A-Fa-f]{2})/g, '%25');
  path = quotePath(path).replace(/%([0-9A-Fa-f]{2})/g, normalizeEscape);
  return removeDotSegments(path.replace(/\/{2,}/g, '/'));
}

/**
 * The content id of the stream whose master playlist is at `url` (§4.2): its normalised path,
 * so one stream served from two CDN hostnames or with two signed query strings gets one id.
 *
 * @param {string} url
 * @returns {string}
 */
export function contentIdFromUrl(url) {
  return normalizePath(url);
}

/**
 * Return `label` if it is usable as an explicit content id or rendition id, else throw:
 * non-empty text of at most 1,024 UTF-8 bytes, without NUL.
 *
 * @param {string} label
 * @param {string} [what] what the label is, for the error message
 * @returns {string}
 */
export function checkLabel(label, what = 'content id') {
  if (typeof label !== 'string' || !label) throw new TypeError(`${what} must be a non-empty string`);
  if (label.includes('\x00')) throw new Error(`${what} must not contain NUL characters`);
  if (!isWellFormed(label)) throw new Error(`${what} is not valid Unicode text (lone surrogate)`);
  if (encoder.encode(label).length > MAX_LABEL_BYTES) {
    throw new Error(`${what} is longer than ${MAX_LABEL_BYTES} bytes`);
  }
  return label;
}

/**
 * The rendition id of the media playlist `playlistUri` listed in `masterUrl` (§4.3): the
 * normalised playlist path relative to the master playlist's directory, or the whole path when
 * it lies elsewhere. A media playlist loaded directly uses `renditionId(url, url)`.
 *
 * @param {string} masterUrl
 * @param {string} playlistUri as written in the master playlist (relative or absolute)
 * @returns {string}
 */
export function renditionId(masterUrl, playlistUri) {
  const masterPath = normalizePath(masterUrl);
  const playlistPath = normalizePath(urljoin(masterUrl, playlistUri));
  const directory = masterPath.slice(0, masterPath.lastIndexOf('/') + 1);
  if (playlistPath.startsWith(directory) && playlistPath.length > directory.length) {
    return playlistPath.slice(directory.length);
  }
  return playlistPath;
}

/**
 * The swarm id of one rendition of one stream (§4.4): 22 base64url characters of
 * `SHA-256("swarmcast/swarm/v1" NUL contentId NUL rendition)`.
 *
 * @param {string} contentId
 * @param {string} rendition
 * @returns {Promise<string>}
 */
export async function swarmId(contentId, rendition) {
  checkLabel(contentId, 'content id');
  checkLabel(rendition, 'rendition id');
  const digest = await sha256(
    concat(SWARM_DOMAIN, encoder.encode(contentId), Uint8Array.of(0), encoder.encode(rendition)),
  );
  return base64url(digest).slice(0, SWARM_ID_LENGTH);
}

/**
 * A sub-range of a resource (`n@o` of EXT-X-BYTERANGE / the BYTERANGE attribute of EXT-X-MAP).
 *
 * @typedef {object} ByteRange
 * @property {number} length number of bytes in the range (`n`)
 * @property {number} offset first byte of the range (`o`), resolved if the playlist omitted it
 */

/**
 * The id of the EXT-X-MAP init segment at `mapUri` (§4.5): the top 53 bits of
 * `SHA-256("swarmcast/init/v1" NUL path [NUL "<length>@<offset>"])`, `path` being the map URI
 * resolved against `baseUrl` and normalised.
 *
 * @param {string} mapUri
 * @param {{baseUrl?: string, byterange?: ByteRange|null}} [options]
 * @returns {Promise<number>}
 */
export async function initSegmentId(mapUri, { baseUrl = '', byterange = null } = {}) {
  const path = normalizePath(baseUrl ? urljoin(baseUrl, mapUri) : mapUri);
  let material = concat(INIT_DOMAIN, encoder.encode(path));
  if (byterange !== null && byterange !== undefined) {
    const { length, offset } = byterange;
    for (const [name, value] of [['length', length], ['offset', offset]]) {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RangeError(`byte range ${name} must be a non-negative integer, not ${describe(value)}`);
      }
    }
    material = concat(material, encoder.encode(`\x00${length}@${offset}`));
  }
  const view = new DataView((await sha256(material)).buffer);
  // Top 53 bits of the first 8 bytes: high word shifted left 21, plus the low word's top 21.
  return view.getUint32(0) * 2 ** 21 + (view.getUint32(4) >>> 11);
}

// ---------------------------------------------------------------------------------- helpers

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function base64url(bytes) {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.ceil(((Math.min(3, bytes.length - i)) * 8) / 6);
    for (let j = 0; j < chars; j++) out += B64URL[(n >> (18 - 6 * j)) & 63];
  }
  return out;
}
