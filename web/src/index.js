/**
 * swarmcast browser client: public entry point.
 *
 * The client is shaped like p2p-media-loader: a player-agnostic core (`core/`: the wire
 * protocol codec, the per-link protocol state machine, identities, the download and upload
 * schedulers, the segment cache and throughput estimators; later the HTTP and P2P loaders) and
 * thin player adapters (`hlsjs/`, later).
 * The core is sans-IO, a twin of the Python implementation in `peer/`, and passes the same
 * shared vectors (tests/vectors/).
 *
 * Bundles: `dist/swarmcast.mjs` (ES module) and `dist/swarmcast.js` (plain script exposing the
 * global `swarmcast`). hls.js is a peer dependency that the adapter will receive from the page
 * (never bundled here).
 *
 * @module swarmcast
 */

export * as protocol from './core/protocol.js';
export * as ids from './core/ids.js';
export {
  ConnectionState,
  ConnectionStateError,
  DEFAULT_CONNECTION_CONFIG,
  PeerProtocol,
  haveSetSequences,
  resolveConnectionConfig,
} from './core/connection.js';
export {
  ErrorCode,
  MessageType,
  ProtocolError,
  decode,
  encode,
  messageFromJSON,
  messageToJSON,
} from './core/protocol.js';
export {
  checkLabel,
  contentIdFromUrl,
  initKey,
  initSegmentId,
  keyToString,
  mediaKey,
  normalizePath,
  renditionId,
  swarmId,
} from './core/ids.js';
export { sha256, sha256Sync } from './core/sha256.js';
export {
  DEFAULT_SCHEDULER_CONFIG,
  FailureReason,
  SegmentScheduler,
  hrwScore,
  resolveSchedulerConfig,
} from './core/scheduler.js';
export { DEFAULT_UPLOAD_CONFIG, UploadScheduler, resolveUploadConfig } from './core/upload.js';
export { SegmentCache } from './core/cache.js';
export {
  DEFAULT_BANDWIDTH_CONFIG,
  ThroughputEstimator,
  TransferMeter,
  resolveBandwidthConfig,
} from './core/bandwidth.js';

export { SignalingClient, SignalingError, resolveSignalingConfig } from './core/signaling-client.js';
export { CHANNEL_LABEL, DEFAULT_SWARM_CONFIG, PeerLink, PeerSwarm, resolveSwarmConfig } from './core/swarm.js';
export {
  IntegrityError,
  IntegrityStore,
  Verdict,
  checkBytes,
  manifestUrlFor,
  parseManifest,
} from './core/integrity.js';
export { HttpError, httpFetch } from './core/http-loader.js';
export { DEFAULT_ENGINE_OPTIONS, P2PEngine, resolveEngineOptions } from './core/engine.js';
export { HlsjsAdapter, createFragmentLoader } from './hlsjs/index.js';
export { SwarmcastPlayer, attach } from './embed.js';

/** Version of this client (package.json), for logs and the signalling handshake. */
export const VERSION = '0.1.0';
/** Wire protocol version spoken: "major.minor". */
export { VERSION_MAJOR as PROTOCOL_MAJOR, VERSION_MINOR as PROTOCOL_MINOR } from './core/protocol.js';
