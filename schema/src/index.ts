export * from './generated/comm-message';
export * from './generated/comm-operations';
export * from './generated/dataset-summary';
export * from './generated/finetune-config';
export * from './generated/harmony-tokens';
export * from './generated/runs-comparison';
export * from './generated/training-run';
export * from './validate';
import mimeTypes from '../mime-types.json';

export const MIME_TYPES = mimeTypes;
export const HARMONY_MIME = mimeTypes['harmony-tokens'];
export const TRAINING_MIME = mimeTypes['training-run'];
export const DATASET_MIME = mimeTypes['dataset-summary'];
export const RUNS_MIME = mimeTypes['runs-comparison'];
