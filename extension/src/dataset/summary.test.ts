import { DATASET_MIME, DatasetSummaryPayload } from '@oss-finetune/schema';

import { contractFixture, contractFixtures, mimeModel } from '../testing/fixtures';
import { DatasetRenderer } from './renderer';

function summary(): DatasetSummaryPayload {
  return {
    version: 1,
    source: 'HuggingFaceH4/Multilingual-Thinking',
    format: 'multilingual-thinking',
    rows: 998,
    rows_read: 1000,
    languages: { French: 200, German: 210, '<script>alert(1)</script>': 1 },
    token_lengths: { edges: [0, 512, 1024, 1536, 2048], counts: [100, 600, 290, 8], min: 80, max: 2010, mean: 870.5 },
    max_seq_length: 1536,
    over_limit: { rows: 8, action: 'truncate' },
    loss_mask: 'assistant',
    tokens_total: 1_000_000,
    tokens_trained: 420_000,
  };
}

async function render(data: unknown) {
  const r = new DatasetRenderer();
  await r.renderModel(mimeModel(DATASET_MIME, data));
  return r.node;
}

describe('DatasetRenderer', () => {
  it('shows rows, the limit and its action, and the fraction trained', async () => {
    const node = await render(summary());
    expect(node.querySelector('.ossft-fact-rows')!.textContent).toBe('998 of 1000 read');
    expect(node.querySelector('.ossft-fact-over-limit')!.textContent).toBe('8 rows, truncated');
    expect(node.querySelector('.ossft-fact-trained')!.textContent).toBe('420,000 of 1,000,000 (42.0%) · loss mask: assistant');
    expect(node.querySelector('.ossft-trained-meter')!.getAttribute('aria-valuenow')).toBe('42.0');
  });

  it('draws one bar per bin and marks the bins past max_seq_length', async () => {
    const node = await render(summary());
    expect(node.querySelectorAll('.ossft-bar').length).toBe(4);
    expect(node.querySelectorAll('.ossft-bar-over').length).toBe(1);
    expect(node.querySelector('.ossft-limit')).not.toBeNull();
  });

  it('lists languages by row count, with their names as text', async () => {
    const node = await render(summary());
    const rows = Array.from(node.querySelectorAll('.ossft-languages tbody tr')).map((tr) => tr.querySelector('th')!.textContent);
    expect(rows).toEqual(['German', 'French', '<script>alert(1)</script>']);
    expect(node.querySelector('script')).toBeNull();
  });

  it('renders the contract fixture', async () => {
    const node = await render(contractFixture('dataset-summary', 'valid', 'multilingual'));
    expect(node.querySelector('.ossft-invalid')).toBeNull();
    expect(node.querySelector('.ossft-histogram')).not.toBeNull();
  });

  it('shows the schema error for every invalid fixture', async () => {
    for (const [, data] of contractFixtures('dataset-summary', 'invalid')) {
      const node = await render(data);
      expect(node.querySelector('.ossft-invalid')!.textContent).toMatch(/: (must|is) /);
    }
  });

  it('refuses counts that do not match the edges', async () => {
    const bad = summary();
    bad.token_lengths.counts.pop();
    const node = await render(bad);
    expect(node.querySelector('.ossft-invalid')!.textContent).toContain('token_lengths.counts: has 3 bins but edges describe 4');
  });
});
