/**
 * Integrity manifests (docs/integrity.md) in the browser: the twin of
 * `peer/integrity_check.py` plus the manifest reader of `samples/integrity.py`.
 *
 * A segment that arrives from a peer is used only if its size and SHA-256 match the manifest
 * the origin published beside the media playlist (`<stem>.integrity.json`). The manifest comes
 * over HTTP from the origin, never from a peer. {@link IntegrityStore} keeps the expected
 * digests of one rendition across successive (live) manifests, refuses entries that contradict
 * earlier ones, and answers {@link IntegrityStore#check} with a {@link Verdict}. Hashing uses
 * WebCrypto, or the pure-JS fallback on pages that are not a secure context (core/sha256.js).
 *
 * @module core/integrity
 */

import { sha256 } from './sha256.js';
import { toHex } from './util.js';

/** Outcome of checking bytes against the origin's digests. */
export const Verdict = Object.freeze({
  /** Size and SHA-256 match the manifest. */
  VERIFIED: 'verified',
  /** The manifest has an entry and the bytes differ: the sender served bad data. */
  MISMATCH: 'mismatch',
  /** No manifest entry is known for the segment: the bytes cannot be checked. */
  UNVERIFIED: 'unverified',
});

/** A manifest failed validation; `message` names the offending field. */
export class IntegrityError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'IntegrityError';
  }
}

const TOP_KEYS = [
  'format',
  'version',
  'algorithm',
  'playlist',
  'media_sequence',
  'live',
  'init',
  'segments',
];
const SEGMENT_KEYS = [
  'sequence',
  'uri',
  'duration',
  'size',
  'sha256',
  'byterange',
  'map',
  'discontinuity',
];
const MAX_ENTRIES = 100_000;
const MAX_SIZE = 2 ** 40;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The manifest URL of a media playlist: `<stem>.integrity.json` beside it, query kept (a CDN
 * token), fragment dropped.
 *
 * @param {string} playlistUrl absolute URL
 * @returns {string}
 */
export function manifestUrlFor(playlistUrl) {
  const url = new URL(playlistUrl);
  const path = url.pathname || '/';
  const slash = path.lastIndexOf('/');
  const name = path.slice(slash + 1);
  const dot = name.lastIndexOf('.');
  const stem = dot > 0 ? name.slice(0, dot) : name;
  url.pathname = `${path.slice(0, slash + 1)}${stem}.integrity.json`;
  url.hash = '';
  return url.toString();
}

/**
 * Parse and validate a manifest (docs/integrity.md, version 1).
 *
 * @param {string} text JSON text
 * @returns {{mediaSequence: number, live: boolean,
 *   segments: Array<{sequence: number, uri: string, size: number, sha256: string}>,
 *   init: Array<{uri: string, size: number, sha256: string}>}}
 * @throws {IntegrityError}
 */
export function parseManifest(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new IntegrityError(`manifest is not JSON: ${error.message}`);
  }
  if (!isObject(doc)) throw new IntegrityError('manifest must be a JSON object');
  checkKeys(doc, TOP_KEYS, 'manifest');
  if (doc.format !== 'swarmcast-integrity') throw new IntegrityError('format must be "swarmcast-integrity"');
  if (doc.version !== 1) throw new IntegrityError(`unsupported version ${JSON.stringify(doc.version)}`);
  if (doc.algorithm !== 'sha256') throw new IntegrityError('algorithm must be "sha256"');
  checkUri(doc.playlist, 'playlist');
  const base = doc.media_sequence;
  if (!Number.isSafeInteger(base) || base < 0) throw new IntegrityError('media_sequence must be an integer >= 0');
  if (typeof doc.live !== 'boolean') throw new IntegrityError('live must be a boolean');
  for (const name of ['init', 'segments']) {
    if (!Array.isArray(doc[name])) throw new IntegrityError(`${name} must be an array`);
    if (doc[name].length > MAX_ENTRIES) throw new IntegrityError(`${name} has more than ${MAX_ENTRIES} entries`);
  }
  const init = doc.init.map((entry, i) => {
    const where = `init[${i}]`;
    if (!isObject(entry)) throw new IntegrityError(`${where} must be an object`);
    checkKeys(entry, ['uri', 'size', 'sha256'], where);
    return { uri: checkUri(entry.uri, `${where}.uri`), ...digest(entry, where) };
  });
  const inits = new Set(init.map((e) => e.uri));
  if (inits.size !== init.length) throw new IntegrityError('init lists a URI twice');
  const segments = doc.segments.map((entry, i) => {
    const where = `segments[${i}]`;
    if (!isObject(entry)) throw new IntegrityError(`${where} must be an object`);
    checkKeys(entry, SEGMENT_KEYS, where);
    if (entry.sequence !== base + i) {
      throw new IntegrityError(`${where}.sequence must be media_sequence + ${i} = ${base + i}`);
    }
    const d = entry.duration;
    if (typeof d !== 'number' || !Number.isFinite(d) || d < 0 || d > 86400) {
      throw new IntegrityError(`${where}.duration must be a number within [0, 86400]`);
    }
    if (entry.map !== null && !inits.has(entry.map)) {
      throw new IntegrityError(`${where}.map names no init entry`);
    }
    if (typeof entry.discontinuity !== 'boolean') {
      throw new IntegrityError(`${where}.discontinuity must be a boolean`);
    }
    const checked = { sequence: entry.sequence, uri: checkUri(entry.uri, `${where}.uri`), ...digest(entry, where) };
    const range = entry.byterange;
    if (range !== null) {
      if (!isObject(range) || !isSize(range.offset) || range.length !== checked.size) {
        throw new IntegrityError(`${where}.byterange must be {offset, length = size}`);
      }
    }
    return checked;
  });
  return { mediaSequence: base, live: doc.live, segments, init };
}

/** Expected digests of one rendition's segments, by media sequence number and init URI. */
export class IntegrityStore {
  constructor() {
    /** Manifests ingested so far (0: nothing can be verified yet). */
    this.manifests = 0;
    /** @type {Map<number, {size: number, sha256: string, uri: string}>} */
    this._segments = new Map();
    /** @type {Map<string, {size: number, sha256: string, uri: string}>} */
    this._inits = new Map();
  }

  /** @returns {number} media segments with a digest */
  get size() {
    return this._segments.size;
  }

  /**
   * Validate a manifest and merge its digests. An entry for a sequence already held must agree
   * with it: segment bytes never change, so a contradiction keeps the old digest.
   *
   * @param {string} text
   * @returns {{added: number[], conflicts: number[]}}
   * @throws {IntegrityError}
   */
  ingest(text) {
    const manifest = parseManifest(text);
    this.manifests += 1;
    const added = [];
    const conflicts = [];
    for (const e of manifest.segments) {
      const held = this._segments.get(e.sequence);
      const fresh = { size: e.size, sha256: e.sha256, uri: e.uri };
      if (!held) {
        this._segments.set(e.sequence, fresh);
        added.push(e.sequence);
      } else if (held.size !== e.size || held.sha256 !== e.sha256 || held.uri !== e.uri) {
        conflicts.push(e.sequence);
      }
    }
    for (const e of manifest.init) {
      if (!this._inits.has(e.uri)) this._inits.set(e.uri, { size: e.size, sha256: e.sha256, uri: e.uri });
    }
    return { added, conflicts };
  }

  /** Drop digests of segments numbered below `sequence` (a live window moved on). */
  forgetBefore(sequence) {
    for (const seq of this._segments.keys()) if (seq < sequence) this._segments.delete(seq);
  }

  /** @returns {{size: number, sha256: string, uri: string}|undefined} */
  expected(sequence) {
    return this._segments.get(sequence);
  }

  /**
   * Check the bytes of media segment `sequence` (size first: a wrong size costs no hashing).
   *
   * @param {number} sequence
   * @param {Uint8Array} data
   * @returns {Promise<string>} a {@link Verdict}
   */
  async check(sequence, data) {
    return checkBytes(this._segments.get(sequence), data);
  }
}

/**
 * @param {{size: number, sha256: string}|undefined} expected
 * @param {Uint8Array} data
 * @returns {Promise<string>} a {@link Verdict}
 */
export async function checkBytes(expected, data) {
  if (!expected) return Verdict.UNVERIFIED;
  if (data.byteLength !== expected.size) return Verdict.MISMATCH;
  const digestBytes = await sha256(data);
  return toHex(digestBytes) === expected.sha256 ? Verdict.VERIFIED : Verdict.MISMATCH;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isSize(value) {
  return Number.isSafeInteger(value) && value >= 0 && value <= MAX_SIZE;
}

function checkKeys(obj, keys, where) {
  for (const key of keys) if (!(key in obj)) throw new IntegrityError(`${where}: missing key ${key}`);
  for (const key of Object.keys(obj)) {
    if (!keys.includes(key)) throw new IntegrityError(`${where}: unknown key ${key}`);
  }
}

function checkUri(value, where) {
  // eslint-disable-next-line no-control-regex
  if (typeof value !== 'string' || !value || value.length > 4096 || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new IntegrityError(`${where} must be a non-empty URI without control characters`);
  }
  return value;
}

function digest(entry, where) {
  if (!isSize(entry.size)) throw new IntegrityError(`${where}.size must be an integer within 0..2^40`);
  if (typeof entry.sha256 !== 'string' || !HEX64.test(entry.sha256)) {
    throw new IntegrityError(`${where}.sha256 must be 64 lowercase hex digits`);
  }
  return { size: entry.size, sha256: entry.sha256 };
}
