//! fmp4: the camera's own H.264 or H.265 access units as fragmented MP4 (ISO/IEC 14496-12
//! and -15), written by hand: no decoding, no encoding, no GStreamer element per viewer.
//!
//! ```text
//! key frame (Annex B, parameter sets in front) ─► Track (size, codec string, avcC or hvcC)
//!                                                   ─► init segment: ftyp + moov(mvhd, trak, mvex)
//! every access unit ─► fragment: moof(mfhd, traf(tfhd, tfdt, trun: one sample)) + mdat
//!                      (its NAL units length-prefixed; parameter sets and delimiters left out)
//! ```
//!
//! One sample per fragment keeps the delay from camera to screen at one frame interval.
//! Decode times are the stream's presentation times on a 90 kHz clock: streams with B-frames
//! (presentation order differs from decoding order) are not supported and are refused.

/// The 90 kHz clock of RTP video, used as the track's timescale.
pub const TIMESCALE: u32 = 90_000;

/// The two codecs cameras send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    H264,
    H265,
}

impl Kind {
    /// Parameter sets and access unit delimiters: in the init segment, not in the samples.
    fn out_of_band(self, nal: &[u8]) -> bool {
        match self {
            Kind::H264 => matches!(h264_type(nal), 7..=9),
            Kind::H265 => matches!(h265_type(nal), 32..=35),
        }
    }
}

/// A video track as the init segment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub kind: Kind,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string, as `MediaSource.isTypeSupported` wants it (`avc1.64001f`).
    pub codec: String,
    /// The sample entry (`avc1` with its `avcC`).
    entry: Vec<u8>,
}

/// The NAL units of an Annex B access unit (start codes removed).
pub fn nal_units(annex_b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 2 < annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            if let Some(s) = start {
                // A four-byte start code leaves one zero behind the previous unit.
                let mut end = i;
                while end > s && annex_b[end - 1] == 0 {
                    end -= 1;
                }
                out.push(&annex_b[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start.filter(|&s| s < annex_b.len()) {
        out.push(&annex_b[s..]);
    }
    out
}

fn h264_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

fn h265_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// The visual sample entry (`avc1`, `hvc1`) around its configuration box.
fn sample_entry(kind: &[u8; 4], width: u32, height: u32, config: Vec<u8>) -> Vec<u8> {
    let mut entry = Vec::with_capacity(86 + config.len());
    entry.extend_from_slice(&[0; 6]); // reserved
    entry.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    entry.extend_from_slice(&[0; 16]); // pre-defined, reserved
    entry.extend_from_slice(&(width as u16).to_be_bytes());
    entry.extend_from_slice(&(height as u16).to_be_bytes());
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    entry.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&1u16.to_be_bytes()); // frame count
    entry.extend_from_slice(&[0; 32]); // compressor name
    entry.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    entry.extend_from_slice(&(-1i16).to_be_bytes());
    entry.extend_from_slice(&config);
    mp4_box(kind, &entry)
}

/// The track an H.265 key frame describes (its VPS, SPS and PPS), or why not.
pub fn h265_track(key_frame: &[u8]) -> Result<Track, String> {
    let nals = nal_units(key_frame);
    let find = |t: u8, what: &str| {
        nals.iter().find(|n| h265_type(n) == t).copied().ok_or(format!("no {what} before the key frame"))
    };
    let (vps, sps, pps) =
        (find(32, "video parameter set")?, find(33, "sequence parameter set")?, find(34, "picture parameter set")?);
    let info = parse_h265_sps(sps)?;
    let ptl = &info.profile_tier_level;
    let mut hvcc = vec![1];
    hvcc.extend_from_slice(ptl); // profile space, tier, profile, compatibility, constraints, level
    hvcc.extend_from_slice(&[0xf0, 0x00, 0xfc]); // min spatial segmentation 0, parallelism unknown
    hvcc.push(0xfc | info.chroma_format as u8);
    hvcc.push(0xf8 | info.bit_depth_luma_minus8 as u8);
    hvcc.push(0xf8 | info.bit_depth_chroma_minus8 as u8);
    hvcc.extend_from_slice(&[0, 0]); // average frame rate: unknown
    hvcc.push(((info.sub_layers as u8) << 3) | (u8::from(info.temporal_id_nested) << 2) | 3);
    hvcc.push(3);
    for (t, nal) in [(32u8, vps), (33, sps), (34, pps)] {
        hvcc.push(0x80 | t); // complete: every set of this type is here
        hvcc.extend_from_slice(&1u16.to_be_bytes());
        hvcc.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        hvcc.extend_from_slice(nal);
    }
    // RFC 6381 / ISO 14496-15 annex E: hvc1.<space><profile>.<compatibility, bits reversed>.
    // <tier><level>.<constraint bytes, trailing zeros left out>
    let space = ["", "A", "B", "C"][(ptl[0] >> 6) as usize];
    let compat = u32::from_be_bytes([ptl[1], ptl[2], ptl[3], ptl[4]]).reverse_bits();
    let tier = if ptl[0] & 0x20 != 0 { "H" } else { "L" };
    let mut constraints: Vec<String> = ptl[5..11].iter().map(|b| format!("{b:X}")).collect();
    while constraints.len() > 1 && constraints.last().is_some_and(|c| c == "0") {
        constraints.pop();
    }
    Ok(Track {
        kind: Kind::H265,
        width: info.width,
        height: info.height,
        codec: format!("hvc1.{space}{}.{compat:X}.{tier}{}.{}", ptl[0] & 0x1f, ptl[11], constraints.join(".")),
        entry: sample_entry(b"hvc1", info.width, info.height, mp4_box(b"hvcC", &hvcc)),
    })
}

/// The track a key frame describes (its SPS and PPS), or why not.
pub fn h264_track(key_frame: &[u8]) -> Result<Track, String> {
    let nals = nal_units(key_frame);
    let sps = nals.iter().find(|n| h264_type(n) == 7).ok_or("no sequence parameter set before the key frame")?;
    let pps = nals.iter().find(|n| h264_type(n) == 8).ok_or("no picture parameter set before the key frame")?;
    let info = parse_sps(sps)?;
    if sps.len() < 4 {
        return Err("sequence parameter set too short".into());
    }
    let mut avcc = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(sps);
    avcc.push(1);
    avcc.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(pps);
    if HIGH_PROFILES.contains(&sps[1]) {
        avcc.extend_from_slice(&[
            0xfc | info.chroma_format as u8,
            0xf8 | info.bit_depth_luma_minus8 as u8,
            0xf8 | info.bit_depth_chroma_minus8 as u8,
            0,
        ]);
    }
    Ok(Track {
        kind: Kind::H264,
        width: info.width,
        height: info.height,
        codec: format!("avc1.{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]),
        entry: sample_entry(b"avc1", info.width, info.height, mp4_box(b"avcC", &avcc)),
    })
}

const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + body.len());
    b.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    b.extend_from_slice(kind);
    b.extend_from_slice(body);
    b
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
    b.extend_from_slice(body);
    mp4_box(kind, &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix() -> Vec<u8> {
    MATRIX.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// `ftyp` + `moov` for one video track (id 1) whose samples all come in fragments.
pub fn init_segment(track: &Track) -> Vec<u8> {
    let brand: &[u8] = if track.kind == Kind::H265 { b"hvc1" } else { b"avc1" };
    let ftyp =
        mp4_box(b"ftyp", &[b"isom".as_slice(), &0x200u32.to_be_bytes(), b"isom", b"iso6", brand, b"mp41"].concat());
    let mut mvhd = vec![0; 8]; // creation, modification
    mvhd.extend_from_slice(&1000u32.to_be_bytes());
    mvhd.extend_from_slice(&0u32.to_be_bytes()); // duration: unknown, it is live
    mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate
    mvhd.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
    mvhd.extend_from_slice(&[0; 10]);
    mvhd.extend_from_slice(&matrix());
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&2u32.to_be_bytes()); // next track id
    let mut tkhd = vec![0; 8];
    tkhd.extend_from_slice(&1u32.to_be_bytes()); // track id
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&0u32.to_be_bytes()); // duration
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&[0; 8]); // layer, group, volume, reserved
    tkhd.extend_from_slice(&matrix());
    tkhd.extend_from_slice(&(track.width << 16).to_be_bytes());
    tkhd.extend_from_slice(&(track.height << 16).to_be_bytes());
    let mut mdhd = vec![0; 8];
    mdhd.extend_from_slice(&TIMESCALE.to_be_bytes());
    mdhd.extend_from_slice(&0u32.to_be_bytes());
    mdhd.extend_from_slice(&0x55c4u16.to_be_bytes()); // "und"
    mdhd.extend_from_slice(&[0; 2]);
    let hdlr = [&[0u8; 4][..], b"vide", &[0; 12], b"gridsight live\0"].concat();
    let dref = full_box(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &full_box(b"url ", 0, 1, &[])].concat());
    let stsd = full_box(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &track.entry].concat());
    let empty = 0u32.to_be_bytes();
    let stbl = mp4_box(
        b"stbl",
        &[
            stsd,
            full_box(b"stts", 0, 0, &empty),
            full_box(b"stsc", 0, 0, &empty),
            full_box(b"stsz", 0, 0, &[0u8; 8]),
            full_box(b"stco", 0, 0, &empty),
        ]
        .concat(),
    );
    let minf = mp4_box(b"minf", &[full_box(b"vmhd", 0, 1, &[0; 8]), mp4_box(b"dinf", &dref), stbl].concat());
    let mdia = mp4_box(b"mdia", &[full_box(b"mdhd", 0, 0, &mdhd), full_box(b"hdlr", 0, 0, &hdlr), minf].concat());
    let trak = mp4_box(b"trak", &[full_box(b"tkhd", 0, 3, &tkhd), mdia].concat());
    let trex = full_box(b"trex", 0, 0, &[1u32, 1, 0, 0, 0].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>());
    let moov = mp4_box(b"moov", &[full_box(b"mvhd", 0, 0, &mvhd), trak, mp4_box(b"mvex", &trex)].concat());
    [ftyp, moov].concat()
}

/// One access unit as a fragment: `moof` + `mdat`. `decode_time` and `duration` are in
/// [`TIMESCALE`] ticks; `sequence` numbers the fragments of a stream.
pub fn fragment(kind: Kind, sequence: u32, decode_time: u64, duration: u32, key: bool, annex_b: &[u8]) -> Vec<u8> {
    let nals: Vec<&[u8]> = nal_units(annex_b).into_iter().filter(|n| !kind.out_of_band(n) && !n.is_empty()).collect();
    let size: usize = nals.iter().map(|n| 4 + n.len()).sum();
    // A sync sample depends on nothing; any other depends on others and is not a sync sample.
    let flags: u32 = if key { 0x0200_0000 } else { 0x0101_0000 };
    let trun_body_len = 4 + 4 + 12;
    let moof_len = 8 + (8 + 8) + 8 + (8 + 4 + 4) + (8 + 4 + 8) + (8 + 4 + trun_body_len);
    let mut trun = Vec::with_capacity(trun_body_len);
    trun.extend_from_slice(&1u32.to_be_bytes()); // one sample
    trun.extend_from_slice(&((moof_len + 8) as u32).to_be_bytes()); // data offset: past the mdat header
    trun.extend_from_slice(&duration.to_be_bytes());
    trun.extend_from_slice(&(size as u32).to_be_bytes());
    trun.extend_from_slice(&flags.to_be_bytes());
    let traf = mp4_box(
        b"traf",
        &[
            full_box(b"tfhd", 0, 0x02_0000, &1u32.to_be_bytes()), // default-base-is-moof
            full_box(b"tfdt", 1, 0, &decode_time.to_be_bytes()),
            full_box(b"trun", 0, 0x000701, &trun), // data offset, duration, size, flags
        ]
        .concat(),
    );
    let moof = mp4_box(b"moof", &[full_box(b"mfhd", 0, 0, &sequence.to_be_bytes()), traf].concat());
    debug_assert_eq!(moof.len(), moof_len);
    let mut out = Vec::with_capacity(moof.len() + 8 + size);
    out.extend_from_slice(&moof);
    out.extend_from_slice(&((8 + size) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

/// What the init segment needs of a sequence parameter set.
#[derive(Debug, PartialEq, Eq)]
struct SpsInfo {
    width: u32,
    height: u32,
    chroma_format: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
}

/// Reads the bits of an RBSP (emulation prevention bytes removed).
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let mut data = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for &b in nal {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<u32, String> {
        let byte = self.data.get(self.pos / 8).ok_or("sequence parameter set ends early")?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        (0..n).try_fold(0, |v, _| Ok((v << 1) | self.bit()?))
    }

    /// Exp-Golomb, unsigned.
    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("bad Exp-Golomb code in the sequence parameter set".into());
            }
        }
        Ok((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    /// Exp-Golomb, signed.
    fn se(&mut self) -> Result<i32, String> {
        let v = self.ue()?;
        Ok(if v % 2 == 1 { v.div_ceil(2) as i32 } else { -((v / 2) as i32) })
    }
}

/// What the init segment needs of an H.265 sequence parameter set.
struct H265Info {
    width: u32,
    height: u32,
    chroma_format: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
    /// The general profile, tier and level: the 12 bytes hvcC copies.
    profile_tier_level: [u8; 12],
    sub_layers: u32,
    temporal_id_nested: bool,
}

fn parse_h265_sps(sps: &[u8]) -> Result<H265Info, String> {
    let mut r = Bits::new(sps);
    r.bits(16)?; // NAL header
    r.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nested = r.bit()? == 1;
    let mut profile_tier_level = [0u8; 12];
    for b in &mut profile_tier_level {
        *b = r.bits(8)? as u8;
    }
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((r.bit()?, r.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.bits(2)?;
        }
    }
    for (profile, level) in present {
        if profile == 1 {
            for _ in 0..11 {
                r.bits(8)?;
            }
        }
        if level == 1 {
            r.bits(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format = r.ue()?;
    if chroma_format == 3 {
        r.bit()?;
    }
    let (w, h) = (r.ue()?, r.ue()?);
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let width = w.checked_sub(sub_w * (left + right)).filter(|&v| v > 0 && v < 16384);
    let height = h.checked_sub(sub_h * (top + bottom)).filter(|&v| v > 0 && v < 16384);
    let (Some(width), Some(height)) = (width, height) else {
        return Err("the sequence parameter set gives no sensible picture size".into());
    };
    Ok(H265Info {
        width,
        height,
        chroma_format,
        bit_depth_luma_minus8: r.ue()?,
        bit_depth_chroma_minus8: r.ue()?,
        profile_tier_level,
        sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nested,
    })
}

fn parse_sps(sps: &[u8]) -> Result<SpsInfo, String> {
    let mut r = Bits::new(sps);
    r.bits(8)?; // NAL header
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let (mut chroma_format, mut depth_luma, mut depth_chroma) = (1, 0, 0);
    if HIGH_PROFILES.contains(&(profile as u8)) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?; // separate colour planes
        }
        depth_luma = r.ue()?;
        depth_chroma = r.ue()?;
        r.bit()?; // qpprime_y_zero_transform_bypass
        if r.bit()? == 1 {
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_allowed
    let width_mbs = r.ue()? + 1;
    let height_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let (sub_w, sub_h) = match chroma_format {
        0 => (1, 1),
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_y = sub_h * (2 - frame_mbs_only);
    let width = (width_mbs * 16).checked_sub(sub_w * (left + right));
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub(crop_y * (top + bottom));
    match (width, height) {
        (Some(width), Some(height)) if width > 0 && height > 0 && width < 16384 && height < 16384 => Ok(SpsInfo {
            width,
            height,
            chroma_format,
            bit_depth_luma_minus8: depth_luma,
            bit_depth_chroma_minus8: depth_chroma,
        }),
        _ => Err("the sequence parameter set gives no sensible picture size".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // x264, 640x360, High profile (level 3.0): cropped from 368 lines of macroblocks.
    const SPS_640X360: [u8; 30] = [
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x16, 0xa0, 0xc0, 0xc0, 0xd4, 0xa0, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe2, 0xc5, 0xb2, 0xc0,
    ];

    fn unit(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter().flat_map(|n| [&[0u8, 0, 0, 1][..], n].concat()).collect()
    }

    #[test]
    fn start_codes_of_three_and_four_bytes_split_the_units() {
        let au = [&[0u8, 0, 0, 1, 9, 0x10][..], &[0, 0, 1, 0x65, 1, 2, 0][..], &[0, 0, 0, 1, 0x41, 7][..]].concat();
        assert_eq!(nal_units(&au), vec![&[9u8, 0x10][..], &[0x65, 1, 2][..], &[0x41, 7][..]]);
        assert!(nal_units(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn the_size_and_codec_come_from_the_sequence_parameter_set() {
        let key = unit(&[&SPS_640X360, &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0], &[0x65, 0x88, 0x84]]);
        let track = h264_track(&key).unwrap();
        assert_eq!((track.width, track.height), (640, 360));
        assert_eq!(track.codec, "avc1.64001e");
        let init = init_segment(&track);
        assert_eq!(&init[4..8], b"ftyp");
        assert!(init.windows(4).any(|w| w == b"avcC") && init.windows(4).any(|w| w == b"trex"));
        // Every box's size adds up: ftyp then moov fill the segment exactly.
        let ftyp = u32::from_be_bytes(init[0..4].try_into().unwrap()) as usize;
        let moov = u32::from_be_bytes(init[ftyp..ftyp + 4].try_into().unwrap()) as usize;
        assert_eq!(ftyp + moov, init.len());
        assert!(h264_track(&unit(&[&[0x65, 0x88]])).unwrap_err().contains("sequence parameter set"));
    }

    // x265, 640x360, Main profile, level 2.1.
    const VPS: [u8; 24] = [
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3f, 0x95, 0x98, 0x09,
    ];
    const SPS_H265: [u8; 49] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3f,
        0xa0, 0x05, 0x02, 0x01, 0x69, 0x65, 0x95, 0x9a, 0x49, 0x32, 0xbf, 0xfc, 0x00, 0x04, 0x00, 0x05, 0xa8, 0x30,
        0x30, 0x30, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0xc1,
    ];
    const PPS_H265: [u8; 7] = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    #[test]
    fn an_h265_key_frame_gives_an_hvc1_track() {
        let key = unit(&[&VPS, &SPS_H265, &PPS_H265, &[0x28, 0x01, 0xaf, 0x2c]]);
        let track = h265_track(&key).unwrap();
        assert_eq!((track.width, track.height), (640, 360));
        assert_eq!(track.codec, "hvc1.1.6.L63.90");
        let init = init_segment(&track);
        assert!(init.windows(4).any(|w| w == b"hvcC") && init.windows(4).any(|w| w == b"hvc1"));
        // The parameter sets live in hvcC; the sample has the picture only.
        let f = fragment(Kind::H265, 1, 0, 3600, true, &key);
        let moof = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        assert_eq!(&f[moof + 8..], &[0, 0, 0, 4, 0x28, 0x01, 0xaf, 0x2c]);
        assert!(h265_track(&unit(&[&SPS_H265, &PPS_H265])).unwrap_err().contains("video parameter set"));
    }

    #[test]
    fn a_fragment_carries_the_picture_without_parameter_sets() {
        let key = unit(&[&SPS_640X360, &[0x68, 0xeb], &[0x65, 0x88, 0x84, 0x21]]);
        let f = fragment(Kind::H264, 7, 90_000, 3600, true, &key);
        assert_eq!(&f[4..8], b"moof");
        let moof = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        assert_eq!(&f[moof + 4..moof + 8], b"mdat");
        // The sample: one NAL unit of 4 bytes behind its length.
        assert_eq!(&f[moof + 8..], &[0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21]);
        // The data offset points at it, from the start of the moof.
        let trun = f.windows(4).position(|w| w == b"trun").unwrap();
        let offset = u32::from_be_bytes(f[trun + 12..trun + 16].try_into().unwrap()) as usize;
        assert_eq!(offset, moof + 8);
        let delta = fragment(Kind::H264, 8, 93_600, 3600, false, &unit(&[&[0x41, 0x9a]]));
        let trun = delta.windows(4).position(|w| w == b"trun").unwrap();
        assert_eq!(&delta[trun + 24..trun + 28], &0x0101_0000u32.to_be_bytes());
    }
}
