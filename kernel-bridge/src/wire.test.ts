import * as zmq from 'zeromq';
import { createHmac } from 'crypto';
import { DELIMITER, JupyterMessage, Session, WireSocket } from './wire';
import { freePorts } from './launcher';
import { until } from './test-helpers';

const key = 'a'.repeat(64);

function frames(session: Session, msgType = 'status', content: Record<string, unknown> = { execution_state: 'idle' }) {
  return session.encode(session.message(msgType, content));
}

describe('Session', () => {
  it('round-trips a message with identities and buffers', () => {
    const a = new Session({ key });
    const b = new Session({ key });
    const msg = a.message('comm_msg', { comm_id: 'x', data: { n: 1 } }, { metadata: { m: true }, buffers: [Buffer.from([1, 2, 3])] });
    const wire = a.encode({ ...msg, identities: [Buffer.from('id-1')] });
    expect(wire[1].toString()).toBe(DELIMITER);
    const r = b.decode(wire);
    if (!r.ok) throw new Error(r.reason);
    expect(r.message.header).toEqual(msg.header);
    expect(r.message.content).toEqual({ comm_id: 'x', data: { n: 1 } });
    expect(r.message.metadata).toEqual({ m: true });
    expect(r.message.buffers.map((x) => [...x])).toEqual([[1, 2, 3]]);
    expect(r.message.identities?.map((x) => x.toString())).toEqual(['id-1']);
  });

  it('signs with HMAC-SHA256 over header, parent, metadata and content', () => {
    const s = new Session({ key });
    const wire = frames(s);
    const h = createHmac('sha256', key);
    for (const f of wire.slice(2, 6)) h.update(f);
    expect(wire[1].toString()).toBe(h.digest('hex'));
  });

  it('rejects a forged signature, an unsigned message, a replay and a tampered body', () => {
    const s = new Session({ key });
    const receiver = new Session({ key });
    const good = frames(s);
    const forged = [...good];
    forged[1] = Buffer.from('0'.repeat(64));
    expect(receiver.decode(forged)).toEqual({ ok: false, reason: 'badSignature' });
    const unsigned = [...good];
    unsigned[1] = Buffer.alloc(0);
    expect(receiver.decode(unsigned)).toEqual({ ok: false, reason: 'unsigned' });
    const tampered = [...good];
    tampered[5] = Buffer.from('{"execution_state":"busy"}');
    expect(receiver.decode(tampered)).toEqual({ ok: false, reason: 'badSignature' });
    const shortSig = [...good];
    shortSig[1] = Buffer.from('abc');
    expect(receiver.decode(shortSig)).toEqual({ ok: false, reason: 'badSignature' });
    expect(receiver.decode(good).ok).toBe(true);
    expect(receiver.decode(good)).toEqual({ ok: false, reason: 'replayed' });
  });

  it('rejects a message signed with another key', () => {
    const other = new Session({ key: 'b'.repeat(64) });
    expect(new Session({ key }).decode(frames(other))).toEqual({ ok: false, reason: 'badSignature' });
  });

  it('drops malformed frames without throwing', () => {
    const s = new Session({ key });
    expect(s.decode([])).toEqual({ ok: false, reason: 'malformed' });
    expect(s.decode([Buffer.from('no delimiter')])).toEqual({ ok: false, reason: 'malformed' });
    expect(s.decode([Buffer.from(DELIMITER), Buffer.from('sig'), Buffer.from('{}')])).toEqual({ ok: false, reason: 'malformed' });
    // Correctly signed but not JSON: authenticated garbage is still garbage.
    const parts = ['not json', '{}', '{}', '{}'].map((x) => Buffer.from(x));
    expect(s.decode([Buffer.from(DELIMITER), Buffer.from(s.sign(parts)), ...parts])).toEqual({ ok: false, reason: 'badJson' });
    const noType = ['{"msg_id":"1"}', '{}', '{}', '{}'].map((x) => Buffer.from(x));
    expect(s.decode([Buffer.from(DELIMITER), Buffer.from(s.sign(noType)), ...noType])).toEqual({ ok: false, reason: 'malformed' });
  });

  it('keeps replay memory bounded, forgetting the oldest signatures first', () => {
    const sender = new Session({ key });
    const receiver = new Session({ key, replayWindow: 3 });
    const msgs = [0, 1, 2, 3].map(() => frames(sender));
    for (const m of msgs) expect(receiver.decode(m).ok).toBe(true);
    // Window of 3: the first has been forgotten, the last three are still remembered.
    expect(receiver.decode(msgs[0]).ok).toBe(true);
    expect(receiver.decode(msgs[3])).toEqual({ ok: false, reason: 'replayed' });
  });

  it('accepts unsigned messages only when the key is empty', () => {
    const open = new Session({ key: '' });
    const wire = frames(open);
    expect(wire[1].length).toBe(0);
    expect(open.decode(wire).ok).toBe(true);
  });

  it('refuses an unknown signature scheme up front', () => {
    expect(() => new Session({ key, signatureScheme: 'rsa-sha256' })).toThrow(/unsupported/);
    expect(() => new Session({ key, signatureScheme: 'hmac-nope' })).toThrow();
  });
});

describe('WireSocket over ZeroMQ', () => {
  it('keeps reading after bad traffic, counts it, and serialises concurrent sends', async () => {
    const [port] = await freePorts(1);
    const router = new zmq.Router({ linger: 0 });
    await router.bind(`tcp://127.0.0.1:${port}`);
    const serverSession = new Session({ key });
    const got: JupyterMessage[] = [];
    const server = new WireSocket('shell', router, serverSession, { onMessage: (m) => got.push(m) });

    const dealer = new zmq.Dealer({ linger: 0, routingId: 'client-1' });
    dealer.connect(`tcp://127.0.0.1:${port}`);
    const clientSession = new Session({ key });
    const replies: JupyterMessage[] = [];
    const client = new WireSocket('shell', dealer, clientSession, { onMessage: (m) => replies.push(m) });
    try {
      const good = frames(clientSession, 'kernel_info_request', {});
      const forged = [...good];
      forged[1] = Buffer.from('f'.repeat(64));
      await client.sendFrames(forged);
      await client.sendFrames([Buffer.from('junk')]);
      // Many sends at once: without a queue zeromq v6 would reject all but one with EBUSY.
      await Promise.all(Array.from({ length: 50 }, (_, i) => client.send(clientSession.message('execute_request', { code: `${i}` }))));
      await client.sendFrames(good);
      await client.sendFrames(good);
      await until(() => got.length === 51 && server.stats.dropped.replayed === 1, 'server to read all messages');
      expect(server.stats.dropped).toEqual({ malformed: 1, unsigned: 0, badSignature: 1, replayed: 1, badJson: 0 });
      expect(got.slice(0, 50).map((m) => m.content.code)).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`));
      expect(got[0].identities?.map((x) => x.toString())).toEqual(['client-1']);

      // Replies routed back by identity.
      await server.send({
        ...serverSession.message('kernel_info_reply', { status: 'ok' }, { parent: got[50].header }),
        identities: got[50].identities,
      });
      await until(() => replies.length === 1, 'reply');
      expect(replies[0].parent_header.msg_id).toBe(got[50].header.msg_id);
    } finally {
      await client.close();
      await server.close();
    }
    await expect(client.send(clientSession.message('x', {}))).rejects.toThrow(/closed/);
  });
});
