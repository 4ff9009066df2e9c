export * from './constants.js';
export * from './errors.js';
export * from './envelope.js';
export * from './codec.js';
export * from './validate.js';
