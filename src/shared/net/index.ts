// The outbound-HTTP module: everything that fetches a URL someone else chose goes through here.
export { classifyAddress, describeCategory, type AddressCategory } from './address-classifier.js';
export { assertValidPolicy, blockedCategory, type NetPolicy } from './address-policy.js';
export { createCheckedLookup, resolveAllowed, systemResolver, type ResolvedAddress, type Resolver } from './checked-lookup.js';
export { FetchError, isRetryableStatus, type FetchErrorCode } from './fetch-errors.js';
export {
  FETCH_DEFAULTS,
  safeFetch,
  safeFetchStream,
  type ResponseHeaders,
  type SafeFetchOptions,
  type SafeResponse,
  type SafeResponseHead,
  type SafeStreamResponse,
} from './safe-fetch.js';
export { assertUrlAllowed, checkUrlTarget, parseFetchUrl } from './url-guard.js';
