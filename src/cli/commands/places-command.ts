import type { Command } from 'commander';
import { Option } from 'commander';
import type { Config } from '../../shared/config.js';
import { PlaceRepo } from '../../db/places/place-repo.js';
import { regeocode } from '../../places/regeocode.js';
import { UsageError } from '../args.js';
import { out, withTools } from '../tool-context.js';

/** `photopipe places regeocode`: find the places of complete photos again. */
export function registerPlacesCommand(program: Command, config: () => Config): void {
  const places = program.command('places').description('places of photos (reverse geocoding)');
  places
    .command('regeocode')
    .description('runs the geocode stage again for complete photos with GPS, through the bulk lane (live uploads go first); prints {queued, provider, tenant}')
    .option('--tenant <NAME>', 'only this tenant\'s photos')
    .addOption(new Option('--provider <P>', 'geocoder to use (default: GEOCODER)').choices(['offline', 'geonames']))
    .action(async (o: { tenant?: string; provider?: 'offline' | 'geonames' }) => {
      const c = config();
      const provider = o.provider ?? c.GEOCODER;
      if (provider === 'geonames' && !c.GEONAMES_USERNAME) throw new UsageError('--provider geonames needs GEONAMES_USERNAME (and the geocode workers need it too)');
      const report = await withTools(c, async (t) => {
        await t.res.broker.waitReady();
        return regeocode({ places: new PlaceRepo(t.res.db), stages: t.photos.stages, broker: t.res.broker }, { tenantId: o.tenant, provider });
      });
      out(report);
    });
}
