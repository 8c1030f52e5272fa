import * as fs from 'fs';
import * as path from 'path';

import type { Channel, HarmonyTokenStream, HarmonyTokensPayload, Part, Role } from '@oss-finetune/schema';

/** The contract fixtures shared with the Python suite. */
export function contractFixture(schema: string, kind: 'valid' | 'invalid', name: string): unknown {
  const file = path.join(__dirname, '..', '..', '..', 'tests', 'contract', 'fixtures', schema, kind, `${name}.json`);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

export function contractFixtures(schema: string, kind: 'valid' | 'invalid'): [string, unknown][] {
  const dir = path.join(__dirname, '..', '..', '..', 'tests', 'contract', 'fixtures', schema, kind);
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'))]);
}

type Tok = [id: number, text: string, role: Role, channel: Channel, part: Part, trained: boolean];

/** One Harmony-shaped exchange: system header, user turn, assistant analysis and final. */
function exchange(): Tok[] {
  return [
    [200006, '<|start|>', 'system', 'none', 'special', false],
    [17360, 'system', 'system', 'none', 'header', false],
    [200008, '<|message|>', 'system', 'none', 'special', false],
    [1, 'Reasoning: low\n', 'system', 'none', 'content', false],
    [200007, '<|end|>', 'system', 'none', 'special', false],
    [200006, '<|start|>', 'user', 'none', 'special', false],
    [1428, 'user', 'user', 'none', 'header', false],
    [200008, '<|message|>', 'user', 'none', 'special', false],
    [2, 'Bonjour', 'user', 'none', 'content', false],
    [3, ' le', 'user', 'none', 'content', false],
    [4, ' monde', 'user', 'none', 'content', false],
    [200007, '<|end|>', 'user', 'none', 'special', false],
    [200006, '<|start|>', 'assistant', 'analysis', 'special', false],
    [173781, 'assistant', 'assistant', 'analysis', 'header', false],
    [200005, '<|channel|>', 'assistant', 'analysis', 'special', false],
    [35644, 'analysis', 'assistant', 'analysis', 'header', false],
    [200008, '<|message|>', 'assistant', 'analysis', 'special', false],
    [5, 'Je', 'assistant', 'analysis', 'content', true],
    [6, ' pense', 'assistant', 'analysis', 'content', true],
    [7, '\n', 'assistant', 'analysis', 'content', true],
    [200007, '<|end|>', 'assistant', 'analysis', 'special', true],
    [200006, '<|start|>', 'assistant', 'final', 'special', false],
    [200005, '<|channel|>', 'assistant', 'final', 'special', false],
    [17196, 'final', 'assistant', 'final', 'header', false],
    [200008, '<|message|>', 'assistant', 'final', 'special', false],
    [8, 'Salut', 'assistant', 'final', 'content', true],
    [9, ' !', 'assistant', 'final', 'content', true],
    [200002, '<|return|>', 'assistant', 'final', 'special', true],
  ];
}

export function makeStream(
  count: number,
  options: { loss?: boolean; label?: string; texts?: Record<number, string> } = {},
): HarmonyTokenStream {
  const base = exchange();
  const stream: HarmonyTokenStream = { ids: [], text: [], message: [], role: [], channel: [], part: [], trained: [] };
  if (options.label) stream.label = options.label;
  if (options.loss) stream.loss = [];
  for (let i = 0; i < count; i++) {
    const [id, text, role, channel, part, trained] = base[i % base.length];
    stream.ids.push(id);
    stream.text.push(options.texts?.[i] ?? text);
    stream.message.push(Math.floor(i / 7));
    stream.role.push(role);
    stream.channel.push(channel);
    stream.part.push(part);
    stream.trained.push(trained);
    if (options.loss) stream.loss!.push(trained ? (i % 10) / 2 : null);
  }
  return stream;
}

export function makePayload(
  count: number,
  options: Parameters<typeof makeStream>[1] & { compare?: HarmonyTokenStream } = {},
): HarmonyTokensPayload {
  return {
    version: 1,
    title: 'test',
    conversations: [{ messages: [], tokens: makeStream(count, options), ...(options.compare ? { compare: options.compare } : {}) }],
  };
}

export function mimeModel(mime: string, data: unknown) {
  return { data: { [mime]: data }, metadata: {}, trusted: true, setData: () => undefined } as any;
}
