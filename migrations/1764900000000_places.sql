-- Up Migration

-- Places found by reverse geocoding, keyed by their GeoNames id: one row per place, whatever the
-- number of photos, processes or concurrent geocodes (upsert on the primary key).
CREATE TABLE places (
  geoname_id    bigint PRIMARY KEY,
  name          text NOT NULL,
  admin1        text,
  country_code  text NOT NULL,
  country_name  text NOT NULL,
  lat           double precision NOT NULL,
  lon           double precision NOT NULL,
  source        text NOT NULL,           -- offline | geonames: who found it last
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A photo's place (photos.place keeps the match: distance, source, or the reason there is none).
ALTER TABLE photos ADD COLUMN place_id bigint REFERENCES places (geoname_id);
CREATE INDEX photos_tenant_place ON photos (tenant_id, place_id, created_at DESC, id DESC) WHERE place_id IS NOT NULL;

-- Failures of best-effort stages (geocode): recorded without failing the photo.
ALTER TABLE photos ADD COLUMN stage_errors jsonb;

-- Down Migration
ALTER TABLE photos DROP COLUMN stage_errors;
DROP INDEX photos_tenant_place;
ALTER TABLE photos DROP COLUMN place_id;
DROP TABLE places;
