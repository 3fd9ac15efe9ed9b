/**
 * Small helpers shared by the core modules (byte strings, hex, text checks). Internal.
 *
 * @module core/util
 */

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether `text` is valid Unicode (no lone UTF-16 surrogate), i.e. encodes to UTF-8 losslessly.
 *
 * @param {string} text
 * @returns {boolean}
 */
export function isWellFormed(text) {
  // String.prototype.isWellFormed is recent (Chrome 111, Safari 16.4): fall back to a regex.
  return typeof text.isWellFormed === 'function' ? text.isWellFormed() : !LONE_SURROGATE.test(text);
}

/**
 * The bytes as lower-case hex, like Python's `bytes.hex()`.
 *
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  let out = '';
  for (const byte of bytes) out += (byte < 16 ? '0' : '') + byte.toString(16);
  return out;
}

/**
 * The bytes of a hex string (either case, no separators).
 *
 * @param {string} hex
 * @returns {Uint8Array}
 * @throws {TypeError} if `hex` is not a string of hex digit pairs
 */
export function fromHex(hex) {
  if (typeof hex !== 'string' || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`expected a string of hex digit pairs, got ${describe(hex)}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * One Uint8Array holding all of `arrays` in order.
 *
 * @param {...Uint8Array} arrays
 * @returns {Uint8Array}
 */
export function concat(...arrays) {
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let pos = 0;
  for (const a of arrays) {
    out.set(a, pos);
    pos += a.length;
  }
  return out;
}

/**
 * A short printable form of any value, for error messages.
 *
 * @param {unknown} value
 * @returns {string}
 */
export function describe(value) {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  }
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (Array.isArray(value)) return `<array of ${value.length}>`;
  if (typeof value === 'object' && value !== null) return '<object>';
  return String(value);
}
