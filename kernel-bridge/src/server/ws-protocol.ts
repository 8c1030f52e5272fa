/**
 * The two message encodings Jupyter Server speaks on /api/kernels/{id}/channels:
 *
 * - `v1.kernel.websocket.jupyter.org` (binary): u64-LE count n, then n u64-LE offsets; offset 0 is
 *   where the channel name starts, each next offset is where the previous part ends. Parts: channel,
 *   header, parent_header, metadata, content, then the buffers.
 * - the legacy default: a JSON text frame holding the whole message with `channel`; a message that
 *   carries buffers goes as a binary frame: u32-BE count n, n u32-BE offsets (JSON first, then buffers).
 */

export const V1_PROTOCOL = 'v1.kernel.websocket.jupyter.org';

export interface WsMessage {
  channel: string;
  header: Record<string, unknown>;
  parent_header: Record<string, unknown>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  buffers: Buffer[];
}

export type WsProtocol = 'v1' | 'json';

function parseObject(bytes: Buffer): Record<string, unknown> {
  const v = JSON.parse(bytes.toString('utf8'));
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('expected a JSON object');
  return v;
}

export function encodeV1(msg: WsMessage): Buffer {
  const parts = [
    Buffer.from(msg.channel, 'utf8'),
    ...[msg.header, msg.parent_header ?? {}, msg.metadata ?? {}, msg.content ?? {}].map((p) => Buffer.from(JSON.stringify(p), 'utf8')),
    ...msg.buffers,
  ];
  const n = parts.length + 1;
  const head = Buffer.alloc(8 * (n + 1));
  head.writeBigUInt64LE(BigInt(n), 0);
  let offset = head.length;
  head.writeBigUInt64LE(BigInt(offset), 8);
  parts.forEach((p, i) => {
    offset += p.length;
    head.writeBigUInt64LE(BigInt(offset), 8 * (i + 2));
  });
  return Buffer.concat([head, ...parts]);
}

export function decodeV1(data: Buffer): WsMessage {
  if (data.length < 8) throw new Error('frame too short');
  const n = Number(data.readBigUInt64LE(0));
  if (n < 6 || 8 * (n + 1) > data.length) throw new Error('bad offset count');
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(Number(data.readBigUInt64LE(8 * (i + 1))));
  for (let i = 1; i < n; i++) {
    if (offsets[i] < offsets[i - 1] || offsets[i] > data.length) throw new Error('bad offsets');
  }
  const part = (i: number) => data.subarray(offsets[i], offsets[i + 1]);
  const buffers: Buffer[] = [];
  for (let i = 5; i < n - 1; i++) buffers.push(Buffer.from(part(i)));
  return {
    channel: part(0).toString('utf8'),
    header: parseObject(part(1)),
    parent_header: parseObject(part(2)),
    metadata: parseObject(part(3)),
    content: parseObject(part(4)),
    buffers,
  };
}

/** Legacy encoding; returns a string (text frame) or a Buffer (binary frame, when there are buffers). */
export function encodeJson(msg: WsMessage): string | Buffer {
  const body = {
    header: msg.header,
    msg_id: msg.header.msg_id,
    msg_type: msg.header.msg_type,
    parent_header: msg.parent_header ?? {},
    metadata: msg.metadata ?? {},
    content: msg.content ?? {},
    channel: msg.channel,
    buffers: [],
  };
  const json = JSON.stringify(body);
  if (msg.buffers.length === 0) return json;
  const parts = [Buffer.from(json, 'utf8'), ...msg.buffers];
  const head = Buffer.alloc(4 * (parts.length + 1));
  head.writeUInt32BE(parts.length, 0);
  let offset = head.length;
  parts.forEach((p, i) => {
    head.writeUInt32BE(offset, 4 * (i + 1));
    offset += p.length;
  });
  return Buffer.concat([head, ...parts]);
}

export function decodeJson(data: Buffer, isBinary: boolean): WsMessage {
  let json: Buffer = data;
  let buffers: Buffer[] = [];
  if (isBinary) {
    if (data.length < 4) throw new Error('frame too short');
    const n = data.readUInt32BE(0);
    if (n < 1 || 4 * (n + 1) > data.length) throw new Error('bad buffer count');
    const offsets: number[] = [];
    for (let i = 0; i < n; i++) offsets.push(data.readUInt32BE(4 * (i + 1)));
    offsets.push(data.length);
    for (let i = 1; i < offsets.length; i++) {
      if (offsets[i] < offsets[i - 1] || offsets[i] > data.length) throw new Error('bad offsets');
    }
    json = data.subarray(offsets[0], offsets[1]);
    buffers = offsets.slice(1, -1).map((start, i) => Buffer.from(data.subarray(start, offsets[i + 2])));
  }
  const m = parseObject(json);
  const obj = (v: unknown) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  if (typeof m.channel !== 'string') throw new Error('missing channel');
  return {
    channel: m.channel,
    header: obj(m.header),
    parent_header: obj(m.parent_header),
    metadata: obj(m.metadata),
    content: obj(m.content),
    buffers,
  };
}

export function encode(protocol: WsProtocol, msg: WsMessage): string | Buffer {
  return protocol === 'v1' ? encodeV1(msg) : encodeJson(msg);
}

export function decode(protocol: WsProtocol, data: Buffer, isBinary: boolean): WsMessage {
  return protocol === 'v1' ? decodeV1(data) : decodeJson(data, isBinary);
}
